"""Running the service: the API (``vidcap serve``), a worker (``vidcap worker``), or both with an
embedded Redis (``vidcap run``, what ``make run`` starts).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from settings import Settings
from workers.redis_server import RedisServer, die_with_parent

log = logging.getLogger("vidcap")

WORKER_STOP_S = 30.0  # a worker asked to stop finishes its job; after this it is killed
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def configure_logging() -> None:
    """One line per event, with the time and the logger's name."""
    logging.basicConfig(
        level=os.environ.get("VIDCAP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serve(settings: Settings, host: str) -> None:
    """Refuses an API without keys on an address other machines can reach.

    Raises:
        SystemExit: With the reason, when refused.
    """
    if not settings.tenants() and not is_loopback(host):
        raise SystemExit(
            f"refusing to serve on {host} without API keys: anyone who can reach it could "
            'upload. Set VIDCAP_API_KEYS="long-random-key:tenant,..." or bind 127.0.0.1.'
        )


def serve(settings: Settings, host: str, port: int) -> None:
    """Runs the API with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    from app.connections import protocol_class, raise_file_limit
    from app.main import create_app

    check_serve(settings, host)
    raise_file_limit()  # idle clients must not run the API out of descriptors
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        http=protocol_class(settings.head_timeout_s, settings.max_connections),
        proxy_headers=True,
        timeout_graceful_shutdown=10,
        log_config=None,  # keep our logging format
        access_log=os.environ.get("VIDCAP_ACCESS_LOG", "1") != "0",
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:  # e.g. the port is taken: uvicorn logged why
        raise SystemExit(1)


# A worker's exit status when it cannot start as configured (sysexits.h EX_CONFIG).
EXIT_CONFIG = 78


class Supervised:
    """A child process that is restarted (with backoff) whenever it exits on its own.

    RQ workers exit 0 when Redis goes away mid-job, so the exit code does not say whether a
    restart is wanted: only ``stop()`` does.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{name}", daemon=True)

    def start(self) -> None:
        """Starts the child, and the thread that restarts it."""
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        # Its own process group: Ctrl-C in the terminal reaches only us; we stop it in order.
        self.process = subprocess.Popen(
            self.argv, env=self.env, start_new_session=True, preexec_fn=die_with_parent
        )
        log.info("%s started (pid %d)", self.name, self.process.pid)

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            assert self.process is not None
            began = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            if code == EXIT_CONFIG:  # it said why (a wrong weight file): a restart cannot help
                log.error(
                    "%s cannot start (exit %d, see its error above); not restarting",
                    self.name,
                    code,
                )
                return
            failures = 0 if time.monotonic() - began > 60 else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.warning("%s exited with %s; restarting in %.0f s", self.name, code, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()

    def stop(self, timeout: float) -> None:
        """SIGTERM (the worker finishes its job), then SIGKILL after ``timeout`` seconds."""
        self._stopping.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
            self.process.kill()
            self.process.wait()


def run(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Redis (embedded unless REDIS_URL is set), ``workers`` workers, and the API.

    Ctrl-C (or SIGTERM) stops the API, then the workers (each finishes its job), then Redis.
    """

    check_serve(settings, host)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_server = None
    if not settings.redis_configured:
        redis_server = RedisServer(data_dir / "redis")
        redis_server.start()
        settings = settings.model_copy(update={"redis_url": redis_server.url})
        log.info("embedded Redis on %s (data in %s)", redis_server.url, data_dir / "redis")
    env = {**os.environ, "VIDCAP_DATA_DIR": str(data_dir)}
    if settings.redis_url is not None:
        env["REDIS_URL"] = settings.redis_url
    settings = settings.model_copy(update={"data_dir": data_dir})
    children = [
        Supervised(f"worker-{i + 1}", [sys.executable, "-m", "vidcap", "worker"], env)
        for i in range(workers)
    ]

    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown of the API; after it returns we
    # stop the workers and Redis ourselves.
    def ignore(signum: int, frame: FrameType | None) -> None:
        log.info("stopping: waiting for workers to finish their jobs (Ctrl-C again: no effect)")

    # uvicorn re-raises the SIGTERM it caught once the API has stopped; with the default
    # handler that would end this process before it stops the workers and Redis.
    def terminated(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        for child in children:
            child.start()
        log.info("vidcap on http://%s:%d  (API docs: /docs)  Ctrl-C stops it", host, port)
        serve(settings, host, port)
    finally:
        signal.signal(signal.SIGINT, ignore)
        signal.signal(signal.SIGTERM, ignore)
        for child in children:
            child.stop(WORKER_STOP_S)
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")


def worker(settings: Settings, burst: bool = False) -> None:
    """A worker process: loads the model once, then works the queue."""
    from workers.runtime import run_worker

    if not settings.redis_configured:
        raise SystemExit("REDIS_URL is not set: point the worker at the API's Redis")
    if not (Path(settings.model) / "config.json").is_file():
        raise SystemExit(f"no model at {settings.model} (set VIDCAP_MODEL to a model directory)")
    from models.perception.weights import WeightsError

    try:
        run_worker(settings, burst=burst)
    except WeightsError as e:  # a missing or altered weight file: say which, and stop
        print(f"vidcap worker: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
