"""Service benchmark: the HTTP API and the queue, each against the least a server could do.

Run it from the repository root with ``make bench`` or ``python -m bench.service``
(``--quick``: a smaller upload, shorter poll runs and the 10 s input, for a smoke run;
``--upload-mb N``: the upload's size in MiB, default 1024; ``--upload-rounds N``: uploads to
each server, default 2; ``--polls-seconds S``: each poll run, default 10).

It starts its own service the way it is deployed (and the way ``tests/conftest.py`` starts it):
a private redis-server (:class:`workers.redis_server.RedisServer`), ``python -m vidcap serve``
and ``python -m vidcap worker`` with the shipped model (``models/checkpoints/default``) on the
CPU, one API key, data in a temporary folder that is removed at the end. Next to it, the
reference: a bare Starlette app with two endpoints and nothing else, served the same way
(uvicorn in one process on the same host, with the same ``uvicorn.Config`` arguments as
``vidcap serve``; access logs off for both). Both are measured in the same run with the same
client, so whatever the machine does to one it does to the other. Three things are measured:

1. **Status polls per second**: ``GET /v1/jobs/{id}`` of a finished caption job (auth, a Redis
   read, the pydantic view, JSON) against the bare app answering the same path with the same
   JSON body (serialised per request), under a closed-loop load: ``wrk`` with 2 threads and 32
   connections (installed with apt-get when missing and allowed; otherwise an asyncio httpx
   client with 32 concurrent tasks). The client runs on the same 2 cores as the servers, so
   both figures are what is left after the client; the ratio is what matters.
   Target: polls >= 0.5x the bare endpoint.
2. **Upload throughput**: a real video padded to ``--upload-mb`` MiB (a small H.264 + AAC mp4
   from :func:`models.media.synth.write_video` with one top-level ``free`` box appended, which
   every demuxer skips, so the API probes and accepts it: 202) sent to ``POST /v1/videos`` as
   multipart, streamed from disk in 1 MiB chunks with a Content-Length; the identical bytes
   sent to a bare endpoint that writes ``request.stream()`` to a file. The time is from the
   request's start to the response, so ours includes what accepting a video costs beyond the
   copy (hashing, the probe, the records). ``--upload-rounds`` rounds, the order alternating,
   dirty pages flushed before each upload; the best MB/s of each server is compared. Also: the
   API process's resident memory, sampled every 50 ms during each upload (baseline and peak;
   the largest growth is reported). Targets: >= 0.7x the bare endpoint's MB/s, RSS growth
   < 100 MB.
3. **Queue overhead**: the decode benchmark's 720p 60 s H.264 + AAC file uploaded three times
   (``segment_seconds`` 10, 11, 12, so each is a new video rather than a deduplicated one),
   each followed by long-polls (``GET /v1/jobs/{id}?wait=60``) until it succeeds. Overhead =
   client time to seeing ``succeeded``, minus the worker's own compute time (the job's
   ``finished_at - started_at``): queue pickup, Redis writes and the notification. It is
   reported two ways. From the POST's response (the client's own clock only) it can come out
   below zero: the worker often starts the job before the API's answer reaches the client, so
   that clock misses part of the compute. From the job's ``created_at`` (written inside the
   POST handler; the client and the server share this machine's clock) it counts everything
   the queue adds, and equals the time in the queue (``started_at - created_at``) plus the
   time from ``finished_at`` to the client seeing it; this second, larger figure is the one
   held to the target. Target: median overhead < 100 ms.

Results go to ``bench/out/service.json``. A missed target prints MISS; the exit status is 0
all the same (this is a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import psutil

from bench.decode import OUT_DIR, ensure_input, find_ffmpeg, input_specs
from models import DEFAULT_MODEL_DIR
from models.media import probe, synth
from workers.redis_server import RedisServer, find_redis_server

JSON_PATH = OUT_DIR / "service.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "bench-" + secrets.token_hex(12)
TENANT = "bench"

POLL_TARGET = 0.5  # polls per second: at least this times the bare endpoint's
UPLOAD_TARGET = 0.7  # upload MB/s: at least this times the bare endpoint's
RSS_TARGET_MB = 100.0  # API process RSS growth during the upload (MiB)
OVERHEAD_TARGET_MS = 100.0  # median queue overhead

WRK_THREADS = 2
CONNECTIONS = 32
CHUNK = 1024 * 1024  # the upload client's read and send size
RSS_EVERY_S = 0.05
SEGMENTS = (10.0, 11.0, 12.0)  # one new video per queue run (the same bytes are deduplicated)
TERMINAL = ("succeeded", "failed", "canceled")
START_TIMEOUT_S = 120.0


# ------------------------------------------------------------------ the reference server


def bare_app(body: Any, spool: Path) -> Any:
    """The reference: a Starlette app with one JSON endpoint and one streaming upload endpoint.

    Args:
        body: What ``GET /v1/jobs/{job_id}`` answers (serialised anew for every request).
        spool: Where ``POST /upload`` writes each request body, one file per request.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def job(request: Request) -> JSONResponse:
        return JSONResponse(body)

    async def upload(request: Request) -> JSONResponse:
        path = spool / f"upload-{uuid.uuid4().hex}.bin"
        size = 0
        with open(path, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                size += len(chunk)
        return JSONResponse({"bytes": size}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/jobs/{job_id}", job),
            Route("/upload", upload, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def serve_bare(port: int, body_file: Path, spool: Path) -> None:
    """Serve :func:`bare_app` exactly as ``vidcap.service.serve`` serves the API."""
    import uvicorn

    from vidcap.service import configure_logging

    configure_logging()
    config = uvicorn.Config(
        bare_app(json.loads(body_file.read_text()), spool),
        host=HOST,
        port=port,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
        log_config=None,
        access_log=False,  # the API runs with VIDCAP_ACCESS_LOG=0
    )
    uvicorn.Server(config).run()


# ------------------------------------------------------------------ processes


def free_port() -> int:
    """A TCP port that was free on HOST a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Stack:
    """redis-server, ``vidcap serve``, ``vidcap worker`` and the bare server, in one folder.

    Use as a context manager: everything started is stopped on the way out, whatever happens.

    Args:
        root: Folder for Redis's data, the uploads, the bare server's files and the logs.
        max_upload_mb: The API's upload limit (raised above the default when needed).
    """

    def __init__(self, root: Path, max_upload_mb: float) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.bare_spool = root / "bare-spool"
        self.bare_spool.mkdir(parents=True)
        self.redis = RedisServer(root / "redis")
        self.api_port = free_port()
        self.bare_port = free_port()
        self.api_url = f"http://{HOST}:{self.api_port}"
        self.bare_url = f"http://{HOST}:{self.bare_port}"
        self.env = {
            **os.environ,
            "VIDCAP_DATA_DIR": str(self.data_dir),
            "VIDCAP_MODEL": str(DEFAULT_MODEL_DIR),
            "VIDCAP_API_KEYS": f"{API_KEY}:{TENANT}",
            "VIDCAP_DEVICE": "cpu",
            "VIDCAP_ACCESS_LOG": "0",
            "VIDCAP_MAX_UPLOAD_MB": str(max(2048.0, max_upload_mb)),
            "HF_HUB_OFFLINE": "1",
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.bare: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO_ROOT,
            env={**self.env, "REDIS_URL": self.redis.url},
            stdout=log,
            stderr=log,
        )

    def start(self) -> None:
        """Redis, the API and one worker; returns once the API says it is ready."""
        self.redis.start()
        self.api = self._spawn(["-m", "vidcap", "serve", "--port", str(self.api_port)], "api")
        self.worker = self._spawn(["-m", "vidcap", "worker"], "worker")
        self.wait_for(self.api_url + "/healthz", self.api)
        self.wait_for(self.api_url + "/readyz", self.api)  # a worker has its model loaded

    def start_bare(self, body: Any) -> None:
        """The bare server, answering ``body`` to ``GET /v1/jobs/{id}``."""
        body_file = self.root / "bare-body.json"
        body_file.write_text(json.dumps(body))
        argv = ["-m", "bench.service", "--serve-bare", str(self.bare_port)]
        argv += ["--bare-body", str(body_file), "--bare-spool", str(self.bare_spool)]
        self.bare = self._spawn(argv, "bare")
        self.wait_for(self.bare_url + "/healthz", self.bare)

    def wait_for(self, url: str, process: subprocess.Popen[bytes]) -> None:
        """Waits until ``GET url`` answers 200.

        Raises:
            RuntimeError: The process exited, or it did not answer within START_TIMEOUT_S.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited ({process.returncode})")
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.worker.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {START_TIMEOUT_S:g} s")

    def logs(self) -> str:
        """The tail of every process's log."""
        return "\n".join(
            f"--- {path.name}\n" + path.read_text(errors="replace")[-2000:]
            for path in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        """SIGTERM to the servers and the worker (SIGKILL after 30 s), then Redis."""
        processes = [p for p in (self.worker, self.api, self.bare) if p is not None]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.redis.stop()
        for log in self._logs:
            log.close()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and not isinstance(error, KeyboardInterrupt):
            print(f"\nthe service's logs:\n{self.logs()}", file=sys.stderr)
        self.stop()


# ------------------------------------------------------------------ HTTP helpers


def api_client(stack: Stack) -> httpx.Client:
    """An httpx client of the API, with the key."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.Client(base_url=stack.api_url, headers=headers, timeout=httpx.Timeout(600.0))


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/form-data`` body around one file, framed by hand so it can be streamed.

    Attributes:
        path: The file sent as the ``file`` part.
        fields: Text fields sent before it.
        boundary: The part boundary.
    """

    path: Path
    fields: dict[str, str]
    boundary: str = field(default_factory=lambda: "bench-" + uuid.uuid4().hex)

    @property
    def head(self) -> bytes:
        """Everything before the file's bytes."""
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.fields.items()
        ]
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{self.path.name}"\r\nContent-Type: video/mp4\r\n\r\n'
        )
        return "".join(parts).encode()

    @property
    def tail(self) -> bytes:
        """Everything after the file's bytes."""
        return f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def length(self) -> int:
        """The body's size in bytes (its Content-Length)."""
        return len(self.head) + self.path.stat().st_size + len(self.tail)

    @property
    def headers(self) -> dict[str, str]:
        """Content-Type and Content-Length."""
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(self.length),
        }

    def stream(self, sent: list[float] | None = None) -> Iterator[bytes]:
        """The body, read from disk CHUNK bytes at a time; appends the time it ended to ``sent``."""
        yield self.head
        with open(self.path, "rb", buffering=0) as source:
            while chunk := source.read(CHUNK):
                yield chunk
        yield self.tail
        if sent is not None:
            sent.append(time.perf_counter())


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 time of the API as Unix seconds."""
    return None if value is None else datetime.fromisoformat(value).timestamp()


def follow(client: httpx.Client, job_id: str) -> tuple[dict[str, Any], float, float]:
    """Long-polls a job until it ends.

    Returns:
        The job as last seen, and when the client saw it end (``perf_counter``, ``time.time``).
    """
    while True:
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 60})
        seen, seen_wall = time.perf_counter(), time.time()
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        if job["state"] in TERMINAL:
            return job, seen, seen_wall


# ------------------------------------------------------------------ 1. status polls


@dataclass
class PollRun:
    """One closed-loop load run against one endpoint.

    Attributes:
        server: ``vidcap API`` or ``bare Starlette``.
        url: The URL polled.
        client: What generated the load.
        seconds: How long it ran.
        requests: Responses received.
        per_s: Responses per second.
        errors: Non-2xx responses and socket errors.
        p50_ms: Median latency.
        p99_ms: 99th percentile latency.
        body_bytes: Size of one response body.
    """

    server: str
    url: str
    client: str
    seconds: float = 0.0
    requests: int = 0
    per_s: float = 0.0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    body_bytes: int = 0


def find_wrk() -> str | None:
    """``wrk`` on PATH, installing Debian's package once when missing and allowed."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        print("wrk is not installed (and cannot be installed here): using a Python client")
        return None
    print("wrk is not installed; installing Debian's package (apt-get install -y -qq wrk) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "install", "-y", "-qq", "wrk"], [apt, "update", "-qq"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(command, env=env, timeout=180, capture_output=True, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # after the update
        subprocess.run(
            [apt, "install", "-y", "-qq", "wrk"], env=env, timeout=180, capture_output=True
        )
    found = shutil.which("wrk")
    if found is None:
        print("installing wrk failed: using a Python client")
    return found


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str, percent: str) -> float | None:
    match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return None if match is None else float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(wrk: str, run: PollRun, seconds: float) -> PollRun:
    """Loads ``run.url`` with wrk for ``seconds``; fills in ``run``."""
    command = [wrk, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s"]
    command += ["--latency", "-H", f"Authorization: Bearer {API_KEY}", run.url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    text = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if total is None or rate is None:
        raise RuntimeError(f"could not read wrk's output:\n{text}\n{done.stderr}")
    run.requests = int(total.group(1))
    run.seconds = float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000.0
    run.per_s = float(rate.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    run.errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in sockets.groups()) if sockets else 0
    )
    run.p50_ms, run.p99_ms = _wrk_ms(text, "50"), _wrk_ms(text, "99")
    return run


async def _python_load(run: PollRun, seconds: float) -> PollRun:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    response = await client.get(run.url)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))
        run.seconds = time.perf_counter() - began
    latencies.sort()
    run.requests = len(latencies)
    run.per_s = run.requests / run.seconds
    run.errors = errors
    if latencies:
        run.p50_ms = latencies[len(latencies) // 2] * 1000
        run.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return run


def poll_run(wrk: str | None, server: str, url: str, seconds: float) -> PollRun:
    """One load run against ``url`` (wrk, or the Python client without it)."""
    body = httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    body.raise_for_status()
    client = f"wrk -t{WRK_THREADS} -c{CONNECTIONS}" if wrk else f"httpx asyncio x{CONNECTIONS}"
    run = PollRun(server=server, url=url, client=client, body_bytes=len(body.content))
    if wrk:
        return run_wrk(wrk, run, seconds)
    return asyncio.run(_python_load(run, seconds))


def measure_polls(
    stack: Stack, job_id: str, wrk: str | None, seconds: float
) -> tuple[PollRun, PollRun]:
    """Polls per second of a finished job, ours then the bare endpoint's (each warmed first)."""
    path = f"/v1/jobs/{job_id}"
    runs = []
    for server, base in (("vidcap API", stack.api_url), ("bare Starlette", stack.bare_url)):
        poll_run(wrk, server, base + path, 1.0)  # warm-up: connections, caches, allocator
        run = poll_run(wrk, server, base + path, seconds)
        print(
            f"  {server:15s} {run.per_s:9,.0f} polls/s  ({run.requests:,} in {run.seconds:.1f} s)"
        )
        runs.append(run)
    return runs[0], runs[1]


# ------------------------------------------------------------------ 2. upload


def make_upload_file(folder: Path, size_mib: int) -> Path:
    """A small real mp4 padded with one top-level ``free`` box to exactly ``size_mib`` MiB.

    Raises:
        MediaError: When the padded file no longer probes (it must be accepted by the API).
    """
    path = synth.write_video(folder / "upload.mp4", synth.VideoSpec(duration=2.0))
    target = size_mib * 1024 * 1024
    pad = target - path.stat().st_size
    if not 8 <= pad < 2**32:
        raise ValueError(f"--upload-mb {size_mib}: a free box of {pad} bytes cannot be made")
    zeros = bytes(CHUNK)
    with open(path, "ab") as out:
        out.write(struct.pack(">I", pad) + b"free")
        left = pad - 8
        while left:
            left -= out.write(zeros[: min(left, CHUNK)])
    probe(path)  # raises MediaError when the padding broke the file
    return path


@dataclass
class UploadRun:
    """One upload of the padded file.

    Attributes:
        server: ``vidcap API`` or ``bare Starlette``.
        url: Where it was POSTed.
        status: The HTTP status.
        bytes: Body bytes sent (multipart framing included; the same for both servers).
        seconds: From the request's start to the response.
        sent_s: From the start to the client's last write of the body.
        mb_per_s: ``bytes / seconds`` in MB/s (10^6 bytes).
        rss_baseline_mib: The server process's RSS just before.
        rss_peak_mib: Its highest sampled RSS during the upload.
        rss_growth_mib: Peak minus baseline.
        rss_samples: How many samples were taken.
        video_id: Our API's new video (None for the bare server).
        job_id: Its caption job.
        answer: The response body, shortened.
    """

    server: str
    url: str
    status: int = 0
    bytes: int = 0
    seconds: float = 0.0
    sent_s: float = 0.0
    mb_per_s: float = 0.0
    rss_baseline_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_growth_mib: float = 0.0
    rss_samples: int = 0
    video_id: str | None = None
    job_id: str | None = None
    answer: str = ""


class RssSampler:
    """Samples one process's RSS every RSS_EVERY_S in a thread, while in the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = float(self.process.memory_info().rss)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, float(self.process.memory_info().rss))
                self.samples += 1
            self._stop.wait(RSS_EVERY_S)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = float(self.process.memory_info().rss)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def upload(client: httpx.Client, server: str, url: str, body: Multipart, pid: int) -> UploadRun:
    """POSTs ``body`` to ``url``, streamed, while sampling process ``pid``'s RSS."""
    run = UploadRun(server=server, url=url, bytes=body.length)
    sent: list[float] = []
    with RssSampler(pid) as rss:
        began = time.perf_counter()
        response = client.post(url, content=body.stream(sent), headers=body.headers)
        run.seconds = time.perf_counter() - began
    run.sent_s = (sent[0] - began) if sent else run.seconds
    run.status = response.status_code
    run.answer = response.text[:300]
    run.mb_per_s = run.bytes / run.seconds / 1e6
    run.rss_baseline_mib = rss.baseline / 2**20
    run.rss_peak_mib = rss.peak / 2**20
    run.rss_growth_mib = (rss.peak - rss.baseline) / 2**20
    run.rss_samples = rss.samples
    if response.status_code == 202 and "video" in response.json():
        created = response.json()
        run.video_id, run.job_id = created["video"]["id"], created["job"]["id"]
    print(
        f"  {server:15s} {run.mb_per_s:7.0f} MB/s  ({run.bytes / 1e6:,.0f} MB in "
        f"{run.seconds:.2f} s, HTTP {run.status}; RSS {run.rss_baseline_mib:.0f} -> "
        f"{run.rss_peak_mib:.0f} MiB)"
    )
    return run


def measure_upload(stack: Stack, client: httpx.Client, path: Path, rounds: int) -> list[UploadRun]:
    """The padded file to the bare endpoint and to ``POST /v1/videos``, ``rounds`` times each.

    Within a round both get identical bytes; the order alternates from round to round. Before
    each upload, dirty pages are flushed (``os.sync``) so neither pays for the other's
    writeback. After each of ours, its caption job is let end and the video is deleted, so
    the worker is idle during the next upload; the bare server's file is deleted likewise.
    """
    assert stack.bare is not None and stack.api is not None
    runs: list[UploadRun] = []
    for index in range(rounds):
        # A new segment_seconds per round: the same bytes and options would be deduplicated.
        body = Multipart(path, {"segment_seconds": str(5 + index)})
        order = ("bare", "ours") if index % 2 == 0 else ("ours", "bare")
        for which in order:
            os.sync()
            if which == "bare":
                url, pid = stack.bare_url + "/upload", stack.bare.pid
                run = upload(client, "bare Starlette", url, body, pid)
                if run.status != 202 or json.loads(run.answer).get("bytes") != body.length:
                    raise RuntimeError(f"the bare endpoint answered {run.status}: {run.answer}")
                for written in stack.bare_spool.iterdir():
                    written.unlink()
            else:
                url, pid = stack.api_url + "/v1/videos", stack.api.pid
                run = upload(client, "vidcap API", url, body, pid)
                if run.status != 202 or run.job_id is None:
                    raise RuntimeError(f"POST /v1/videos answered {run.status}: {run.answer}")
                follow(client, run.job_id)
                client.delete(f"/v1/videos/{run.video_id}").raise_for_status()
            runs.append(run)
    return runs


def best_upload(runs: Sequence[UploadRun], server: str) -> UploadRun:
    """The fastest of ``server``'s uploads, with the largest RSS growth of any of them."""
    mine = [run for run in runs if run.server == server]
    best = max(mine, key=lambda run: run.mb_per_s)
    worst_rss = max(mine, key=lambda run: run.rss_growth_mib)
    return UploadRun(
        **{
            **asdict(best),
            "rss_baseline_mib": worst_rss.rss_baseline_mib,
            "rss_peak_mib": worst_rss.rss_peak_mib,
            "rss_growth_mib": worst_rss.rss_growth_mib,
        }
    )


# ------------------------------------------------------------------ 3. queue overhead


@dataclass
class QueueRun:
    """One video captioned through the queue.

    Attributes:
        segment_seconds: The option that makes each run a new video.
        video_id: The video.
        job_id: Its caption job.
        state: How the job ended.
        post_s: The upload, request to response.
        client_s: From the POST's response to the client seeing the job end.
        compute_s: ``finished_at - started_at``: the worker's own time.
        overhead_ms: ``client_s - compute_s`` (may be below zero: see the module's docstring).
        created_overhead_ms: From ``created_at`` to the client seeing the end, minus
            ``compute_s``: ``queue_wait_ms + notify_ms`` (the figure held to the target).
        queue_wait_ms: ``started_at - created_at``.
        notify_ms: From ``finished_at`` to the client seeing it (same machine, same clock).
        timings: The job's seconds per stage.
    """

    segment_seconds: float
    video_id: str = ""
    job_id: str = ""
    state: str = ""
    post_s: float = 0.0
    client_s: float = 0.0
    compute_s: float = 0.0
    overhead_ms: float = 0.0
    created_overhead_ms: float = 0.0
    queue_wait_ms: float = 0.0
    notify_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def queue_run(client: httpx.Client, path: Path, segment_seconds: float) -> QueueRun:
    """Uploads ``path``, then follows its caption job to the end."""
    run = QueueRun(segment_seconds=segment_seconds)
    body = Multipart(path, {"segment_seconds": f"{segment_seconds:g}"})
    began = time.perf_counter()
    response = client.post("/v1/videos", content=body.stream(), headers=body.headers)
    answered = time.perf_counter()
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/videos answered {response.status_code}: {response.text}")
    created = response.json()
    run.video_id, run.job_id = created["video"]["id"], created["job"]["id"]
    job, seen, seen_wall = follow(client, run.job_id)
    run.state = job["state"]
    run.post_s = answered - began
    run.client_s = seen - answered
    created_at = parse_time(job["created_at"])
    started_at, finished_at = parse_time(job["started_at"]), parse_time(job["finished_at"])
    if created_at is not None and started_at is not None and finished_at is not None:
        run.compute_s = finished_at - started_at
        run.queue_wait_ms = (started_at - created_at) * 1000
        run.notify_ms = (seen_wall - finished_at) * 1000
        run.created_overhead_ms = (seen_wall - created_at - run.compute_s) * 1000
    run.overhead_ms = (run.client_s - run.compute_s) * 1000
    run.timings = job.get("timings") or {}
    print(
        f"  segment_seconds={segment_seconds:g}: {run.state}, compute {run.compute_s:.2f} s, "
        f"client {run.client_s:.2f} s; overhead {run.created_overhead_ms:.0f} ms from "
        f"created_at, {run.overhead_ms:.0f} ms from the POST's answer"
    )
    return run


# ------------------------------------------------------------------ report


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment(wrk: str | None) -> dict[str, Any]:
    """The machine and the versions of everything measured."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in ("fastapi", "starlette", "uvicorn", "httpx", "redis", "rq", "python-multipart"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
        done = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True)
        versions["redis-server"] = done.stdout.strip()
    if wrk:
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        versions["wrk"] = (done.stdout or done.stderr).splitlines()[0].strip()
    return {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "system": platform.platform(),
        "versions": versions,
    }


def verdict(ok: bool | None) -> str:
    """PASS, MISS, or n/a when not measured."""
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def summarize(
    polls: tuple[PollRun, PollRun] | None,
    uploads: list[UploadRun],
    queue: list[QueueRun],
) -> list[dict[str, Any]]:
    """One row per figure: ours, the reference, the ratio, the target and the verdict."""
    rows: list[dict[str, Any]] = []
    if polls is not None:
        ours, bare = polls
        ratio = ours.per_s / bare.per_s if bare.per_s else None
        clean = ours.errors == 0 and bare.errors == 0
        rows.append(
            {
                "what": "status polls, GET /v1/jobs/{id}",
                "ours": f"{ours.per_s:,.0f} /s",
                "reference": f"{bare.per_s:,.0f} /s",
                "ratio": ratio,
                "target": f">= {POLL_TARGET:g}x",
                "ok": None if ratio is None or not clean else ratio >= POLL_TARGET,
            }
        )
    if uploads:
        ours_up, bare_up = (
            best_upload(uploads, "vidcap API"),
            best_upload(uploads, "bare Starlette"),
        )
        ratio = ours_up.mb_per_s / bare_up.mb_per_s if bare_up.mb_per_s else None
        rows.append(
            {
                "what": f"upload {ours_up.bytes / 2**20:,.0f} MiB, POST /v1/videos, best",
                "ours": f"{ours_up.mb_per_s:,.0f} MB/s",
                "reference": f"{bare_up.mb_per_s:,.0f} MB/s",
                "ratio": ratio,
                "target": f">= {UPLOAD_TARGET:g}x",
                "ok": None if ratio is None else ratio >= UPLOAD_TARGET,
            }
        )
        rows.append(
            {
                "what": "API RSS growth during an upload, most",
                "ours": f"{ours_up.rss_growth_mib:,.1f} MiB",
                "reference": f"{bare_up.rss_growth_mib:,.1f} MiB",
                "ratio": None,
                "target": f"< {RSS_TARGET_MB:g} MB",
                "ok": ours_up.rss_growth_mib < RSS_TARGET_MB,
            }
        )
    done = [run for run in queue if run.state == "succeeded"]
    if done:
        median = statistics.median(run.created_overhead_ms for run in done)
        compute = statistics.median(run.compute_s for run in done)
        rows.append(
            {
                "what": f"queue overhead, median of {len(done)}",
                "ours": f"{median:,.0f} ms",
                "reference": f"compute {compute:.2f} s",
                "median_ms": median,
                "median_from_post_answer_ms": statistics.median(run.overhead_ms for run in done),
                "ratio": None,
                "target": f"< {OVERHEAD_TARGET_MS:g} ms",
                "ok": median < OVERHEAD_TARGET_MS and len(done) == len(queue),
            }
        )
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The summary table, one row per figure."""
    header = ("measurement", "ours", "reference", "ratio", "target", "verdict")
    lines = [
        (
            row["what"],
            row["ours"],
            row["reference"],
            "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
            row["target"],
            verdict(row["ok"]),
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    right = {1, 2, 3}

    def show(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(show(header))
    print("  ".join("-" * width for width in widths))
    for line in lines:
        print(show(line))


def print_details(
    polls: tuple[PollRun, PollRun] | None,
    uploads: list[UploadRun],
    queue: list[QueueRun],
) -> None:
    """What is behind each figure."""
    if polls is not None:
        print(
            "\nstatus polls (closed loop; the client shares the machine's cores with the servers):"
        )
        for poll in polls:
            p50 = "-" if poll.p50_ms is None else f"{poll.p50_ms:.1f}"
            p99 = "-" if poll.p99_ms is None else f"{poll.p99_ms:.1f}"
            print(
                f"  {poll.server:15s} {poll.per_s:9,.0f} /s  p50 {p50} ms  p99 {p99} ms  "
                f"errors {poll.errors}  body {poll.body_bytes} B  "
                f"[{poll.client}, {poll.seconds:.1f} s]"
            )
    if uploads:
        print(
            "\nupload, in the order run (request start to response; MB = 10^6 bytes, "
            "MiB = 2^20 bytes):"
        )
        for up in uploads:
            print(
                f"  {up.server:15s} {up.mb_per_s:6.0f} MB/s  {up.seconds:6.2f} s (body sent at "
                f"{up.sent_s:.2f} s)  RSS baseline {up.rss_baseline_mib:.0f} MiB, peak "
                f"{up.rss_peak_mib:.0f} MiB, growth {up.rss_growth_mib:.1f} MiB "
                f"({up.rss_samples} samples)"
            )
    if queue:
        print(
            "\nqueue (compute = finished_at - started_at; overhead = time to seeing the end, "
            "minus compute,\n       from created_at [held to the target] and from the POST's "
            "answer):"
        )
        for run in queue:
            print(
                f"  segment_seconds={run.segment_seconds:g}: {run.state}, upload "
                f"{run.post_s:.2f} s, compute {run.compute_s:.3f} s; overhead "
                f"{run.created_overhead_ms:.0f} ms (in queue {run.queue_wait_ms:.0f} ms + "
                f"finished -> seen {run.notify_ms:.0f} ms), from the answer "
                f"{run.overhead_ms:.0f} ms (client {run.client_s:.3f} s)"
            )
        done = [run for run in queue if run.state == "succeeded"]
        if done:
            print(
                f"  median overhead: {statistics.median(r.created_overhead_ms for r in done):.0f}"
                f" ms from created_at, {statistics.median(r.overhead_ms for r in done):.0f} ms "
                "from the POST's answer"
            )


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (and the hidden ones that run the bare server)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.service", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 MiB upload, 3 s poll runs, the 10 s input"
    )
    parser.add_argument("--upload-mb", type=int, default=None, help="upload size, MiB (1024)")
    parser.add_argument(
        "--polls-seconds", type=float, default=None, help="each poll run, seconds (10)"
    )
    parser.add_argument(
        "--upload-rounds", type=int, default=2, help="uploads to each server, best kept (2)"
    )
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare-body", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-spool", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upload_mb is None:
        args.upload_mb = 200 if args.quick else 1024
    if args.polls_seconds is None:
        args.polls_seconds = 3.0 if args.quick else 10.0
    if args.upload_mb < 1 or args.polls_seconds <= 0 or args.upload_rounds < 1:
        parser.error("--upload-mb, --polls-seconds and --upload-rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 even when a target is missed."""
    args = parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.bare_body, args.bare_spool)
        return 0
    began = time.perf_counter()
    wrk = find_wrk()
    env = environment(wrk)
    v = env["versions"]
    print(
        f"machine: {env['cpu_model']}, {env['affinity']} of {env['cpus']} CPUs, "
        f"{env['memory_gib']} GiB; {env['system']}; load average "
        f"{env['load_average_1min_at_start']:g} at the start"
    )
    print("versions: " + ", ".join(f"{name} {version}" for name, version in v.items()))
    print(
        f"servers: uvicorn, one process each on {HOST}; vidcap API (1 key, access log off) + "
        "1 worker (shipped model, CPU) + redis-server, against a bare Starlette app"
    )
    print(
        "client: "
        + (
            f"wrk -t{WRK_THREADS} -c{CONNECTIONS} for polls"
            if wrk
            else f"Python httpx asyncio client, {CONNECTIONS} concurrent tasks, for polls"
        )
        + "; httpx streaming 1 MiB chunks for uploads. The client shares the "
        f"{env['affinity']} cores with the servers."
    )

    ffmpeg = find_ffmpeg()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    spec = next(s for s in input_specs(args.quick) if s.gop == s.fps and s.height == 720)
    print("\ninputs:")
    video = ensure_input(ffmpeg, spec)

    polls: tuple[PollRun, PollRun] | None = None
    uploads: list[UploadRun] = []
    queue: list[QueueRun] = []
    cleanup: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="vidcap-bench-service-"))
    try:
        made = time.perf_counter()
        big = make_upload_file(root, args.upload_mb)
        print(
            f"  upload: {big.stat().st_size / 2**20:,.0f} MiB (2 s 320x240 H.264 + AAC mp4 "
            f"and one 'free' box; probes fine), written in {time.perf_counter() - made:.1f} s"
        )
        print("\nstarting redis-server, vidcap serve and vidcap worker ...", flush=True)
        with Stack(root, args.upload_mb * 1.1) as stack, api_client(stack) as client:
            print(f"  ready in {time.perf_counter() - began:.1f} s since the start")
            print(f"\n3. queue overhead ({spec.name}, long-poll ?wait=60):", flush=True)
            for seconds in SEGMENTS:
                queue.append(queue_run(client, video, seconds))

            finished = next((run for run in reversed(queue) if run.state == "succeeded"), None)
            if finished is None:
                raise RuntimeError("no caption job succeeded: nothing to poll (see the logs)")
            body = client.get(f"/v1/jobs/{finished.job_id}").json()
            stack.start_bare(body)
            print(f"\n1. status polls ({args.polls_seconds:g} s each, after 1 s warm-up):")
            polls = measure_polls(stack, finished.job_id, wrk, args.polls_seconds)

            print(
                f"\n2. upload ({args.upload_mb} MiB, identical multipart bytes, "
                f"{args.upload_rounds} rounds):",
                flush=True,
            )
            uploads = measure_upload(stack, client, big, args.upload_rounds)

            video_ids = [run.video_id for run in queue]  # the uploads are deleted already
            for video_id in video_ids:
                client.delete(f"/v1/videos/{video_id}").raise_for_status()
            video_ids += [run.video_id for run in uploads if run.video_id]
            left = [
                str(p.relative_to(stack.data_dir))
                for folder in (stack.data_dir / "uploads", stack.data_dir / "videos")
                if folder.is_dir()
                for p in folder.rglob("*")
                if p.is_file()
            ]
            cleanup = {"videos_deleted": len(video_ids), "files_left_in_data_dir": left}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        cleanup["temp_dir_removed"] = not root.exists()

    print()
    rows = summarize(polls, uploads, queue)
    print_table(rows)
    print_details(polls, uploads, queue)
    print(
        f"\ncleanup: {cleanup.get('videos_deleted', 0)} videos deleted through the API, "
        f"{len(cleanup.get('files_left_in_data_dir', []))} files left behind in the data dir, "
        f"temp dir removed: {cleanup['temp_dir_removed']}"
    )
    print(f"total {time.perf_counter() - began:.0f} s (targets are informative: exit status 0)")

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "upload_mib": args.upload_mb,
        "upload_rounds": args.upload_rounds,
        "polls_seconds": args.polls_seconds,
        "environment": env,
        "queue_input": {"spec": asdict(spec), "file": str(video)},
        "summary": rows,
        "polls": None if polls is None else [asdict(run) for run in polls],
        "upload": [asdict(run) for run in uploads],
        "queue": [asdict(run) for run in queue],
        "queue_median_overhead_ms": (
            statistics.median(run.created_overhead_ms for run in queue) if queue else None
        ),
        "queue_median_overhead_from_post_answer_ms": (
            statistics.median(run.overhead_ms for run in queue) if queue else None
        ),
        "cleanup": cleanup,
    }
    JSON_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {os.path.relpath(JSON_PATH)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
