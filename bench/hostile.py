"""Hostile-client benchmark: the API under idle, slow and oversized unauthenticated clients.

Run it from the repository root with ``python -m bench.hostile`` (loopback only, bounded:
about a minute). It starts a private redis-server and ``vidcap serve`` the way
``bench/service.py`` does (no worker: nothing here needs one), then measures, in one run:

1. ``GET /healthz`` latency (200 calls, one at a time): alone, then with 5,000 idle
   connections (open, never a byte) and 100 slow ones (a request head sent a byte every
   0.5 s) held open. Printed: p50 and p99 of both, and their ratio. A normal upload is sent
   while they are held; it must get 202.
2. The API process's resident memory while 20 clients each send, at once and without a key,
   a body that says it is 300 MB (a question's JSON, or an upload's multipart): sampled every
   50 ms; printed: the growth, and what each client got (401 is right).

The head deadline is raised to 60 s for the run, so the idle and slow connections stay open
while they are measured (``tests/app/test_connections.py`` checks that they are closed after
it). Results go to ``bench/out/hostile.json``.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.service import API_KEY, OUT_DIR, RssSampler, Stack
from models.media import synth

IDLE, SLOW, BODIES, BODY_BYTES = 5000, 100, 20, 300_000_000


class ApiOnly(Stack):
    """The service stack without a worker (nothing here runs a job)."""

    def start(self) -> None:
        self.redis.start()
        self.env["VIDCAP_HEAD_TIMEOUT_S"] = "60"
        self.api = self._spawn(["-m", "vidcap", "serve", "--port", str(self.api_port)], "api")
        self.wait_for(self.api_url + "/healthz", self.api)


def healthz_times(url: str, calls: int = 200) -> list[float]:
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(calls):
            began = time.perf_counter()
            client.get(url + "/healthz").raise_for_status()
            times.append(time.perf_counter() - began)
    return times


def percentiles(times: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(times, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def oversized(port: int, path: str, kind: str, answers: list[str]) -> None:
    """Sends a head promising BODY_BYTES without a key, then zeros until the server answers."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {BODY_BYTES}\r\n\r\n"
    ).encode()
    chunk = bytes(1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        sock.settimeout(0.001)
        sent, reply = 0, b""
        while sent < BODY_BYTES:
            try:
                reply = sock.recv(4096)
                if reply:
                    break
            except TimeoutError:
                pass
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except OSError:  # the server answered and closed
                break
        if not reply:
            sock.settimeout(10)
            try:
                reply = sock.recv(4096)
            except OSError:
                reply = b""
    status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "closed"
    answers.append(f"{status} after {sent / 1e6:.0f} MB")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, ApiOnly(Path(tmp), 512) as stack:
        url = stack.api_url
        alone = healthz_times(url)
        address = ("127.0.0.1", stack.api_port)
        idle = [socket.create_connection(address) for _ in range(IDLE)]
        slow = [socket.create_connection(address) for _ in range(SLOW)]
        stop = threading.Event()

        def drip() -> None:
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            while not stop.wait(0.5):
                for sock in slow:
                    sock.sendall(b"x")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            time.sleep(1)
            held = healthz_times(url)
            video = synth.write_video(Path(tmp) / "clip.mp4", synth.VideoSpec(duration=1))
            with httpx.Client(timeout=30) as client, video.open("rb") as f:
                uploaded = client.post(
                    url + "/v1/videos",
                    files={"file": ("clip.mp4", f)},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ).status_code
        finally:
            stop.set()
            dripper.join()
            for sock in idle + slow:
                sock.close()
        assert stack.api is not None
        answers: list[str] = []
        targets = [
            ("/v1/videos/vid_x/questions", "application/json"),
            ("/v1/videos", "multipart/form-data; boundary=x"),
        ]
        with RssSampler(stack.api.pid) as rss:
            threads = [
                threading.Thread(target=oversized, args=(stack.api_port, *targets[i % 2], answers))
                for i in range(BODIES)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        result: dict[str, Any] = {
            "healthz_alone": percentiles(alone),
            "healthz_with_idle_and_slow": percentiles(held),
            "idle_connections": IDLE,
            "slow_connections": SLOW,
            "upload_status_while_held": uploaded,
            "oversized_unauthenticated_bodies": BODIES,
            "oversized_answers": sorted(answers),
            "rss_baseline_mib": rss.baseline / 2**20,
            "rss_growth_mib": (rss.peak - rss.baseline) / 2**20,
        }
    ratio = result["healthz_with_idle_and_slow"]["p99_ms"] / result["healthz_alone"]["p99_ms"]
    result["p99_ratio"] = ratio
    print(
        f"/healthz p99: {result['healthz_alone']['p99_ms']:.1f} ms alone, "
        f"{result['healthz_with_idle_and_slow']['p99_ms']:.1f} ms with {IDLE} idle + {SLOW} slow"
        f" connections ({ratio:.2f}x); upload while held: HTTP {uploaded}"
    )
    print(
        f"{BODIES} unauthenticated {BODY_BYTES / 1e6:.0f} MB bodies: RSS "
        f"{result['rss_baseline_mib']:.0f} MiB + {result['rss_growth_mib']:.1f} MiB; answers: "
        + ", ".join(sorted(set(answers)))
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
