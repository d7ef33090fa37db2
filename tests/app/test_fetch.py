"""fetch_url against a local HTTP server: redirects, limits, timeouts and the address check."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.errors import ApiError
from app.fetch import fetch_url
from app.uploads import Received

PAYLOAD = os.urandom(300_000)
LIMIT = 1024 * 1024
ENDLESS_CAP = 64 * 1024 * 1024  # what /endless would send if nobody stopped reading


class State:
    """What the handler threads share with the tests."""

    def __init__(self) -> None:
        self.stop = threading.Event()  # set at teardown: ends the slow handlers
        self.endless_sent = 0
        self.endless_done = threading.Event()


class Handler(BaseHTTPRequestHandler):
    state: State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/video.mp4":
            self.send(200, PAYLOAD, {"Content-Type": "video/mp4"})
        elif path == "/named":
            cd = 'attachment; filename="../x/../evil name.mp4"'
            self.send(200, PAYLOAD, {"Content-Disposition": cd})
        elif path == "/named-star":
            cd = "attachment; filename=\"fallback.mp4\"; filename*=UTF-8''caf%C3%A9.mp4"
            self.send(200, PAYLOAD, {"Content-Disposition": cd})
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            # Relative Locations: "1" from /hop/2 is /hop/1; the last hop is absolute-path.
            self.send(302, headers={"Location": str(left - 1) if left > 0 else "/video.mp4"})
        elif path == "/loop":
            self.send(302, headers={"Location": "/loop"})
        elif path == "/to-ftp":
            self.send(302, headers={"Location": "ftp://example.com/video.mp4"})
        elif path == "/missing":
            self.send(404, b"not here")
        elif path == "/empty":
            self.send(200, b"")
        elif path == "/huge":
            # Claims more than the limit; the client must refuse without reading.
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif path == "/endless":
            self.endless()
        elif path == "/slow":
            self.state.stop.wait(5)  # no answer within the test's timeout
            self.send(200, PAYLOAD)
        elif path == "/trickle":
            # Each byte comes well within a per-read timeout; the whole never does.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if self.state.stop.wait(0.05):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        else:
            self.send(404)

    def endless(self) -> None:
        # No Content-Length: the body runs until the connection closes (HTTP/1.0).
        self.send_response(200)
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            while self.state.endless_sent < ENDLESS_CAP:
                self.wfile.write(chunk)
                self.state.endless_sent += len(chunk)
        except OSError:
            pass  # the client hung up: what we want
        finally:
            self.state.endless_done.set()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-body is the point of several tests


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, State]]:
    state = State()
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def base(http_server: tuple[str, State]) -> str:
    return http_server[0]


def fetch(url: str, dest: Path, **overrides: Any) -> Received:
    options: dict[str, Any] = {
        "max_bytes": LIMIT,
        "timeout_s": 5.0,
        "max_redirects": 5,
        "allow_private": True,  # the test server is on 127.0.0.1
    } | overrides
    return asyncio.run(fetch_url(url, dest, **options))


def refused(url: str, dest: Path, **overrides: Any) -> ApiError:
    """The ApiError fetching ``url`` raises, after checking that no file was left."""
    with pytest.raises(ApiError) as caught:
        fetch(url, dest, **overrides)
    assert leftovers(dest) == []
    return caught.value


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# ------------------------------------------------------------------ fetched


def test_fetches_a_file(base: str, tmp_path: Path) -> None:
    got = fetch(f"{base}/video.mp4", tmp_path)
    assert got.path.parent == tmp_path
    assert got.path.name.startswith(".upload-") and got.path.name.endswith(".part")
    assert got.path.read_bytes() == PAYLOAD
    assert got.size == len(PAYLOAD)
    assert got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert got.filename == "video.mp4"
    assert got.fields == {}
    assert leftovers(tmp_path) == [got.path.name]


def test_follows_a_redirect_chain_to_the_final_name(base: str, tmp_path: Path) -> None:
    got = fetch(f"{base}/hop/2", tmp_path, max_redirects=3)  # /hop/2 -> 1 -> 0 -> /video.mp4
    assert got.path.read_bytes() == PAYLOAD
    assert got.filename == "video.mp4"


def test_filename_from_content_disposition(base: str, tmp_path: Path) -> None:
    assert fetch(f"{base}/named", tmp_path).filename == "evil name.mp4"
    assert fetch(f"{base}/named-star", tmp_path).filename == "café.mp4"


# ------------------------------------------------------------------ refused


def test_too_many_redirects(base: str, tmp_path: Path) -> None:
    assert refused(f"{base}/hop/2", tmp_path, max_redirects=2).code == "too_many_redirects"


def test_redirect_loop(base: str, tmp_path: Path) -> None:
    assert refused(f"{base}/loop", tmp_path).code == "too_many_redirects"


def test_redirect_to_another_scheme_is_checked(base: str, tmp_path: Path) -> None:
    assert refused(f"{base}/to-ftp", tmp_path).code == "url_not_allowed"


def test_error_status_is_fetch_failed(base: str, tmp_path: Path) -> None:
    error = refused(f"{base}/missing", tmp_path)
    assert error.code == "fetch_failed"
    assert "404" in error.message


def test_empty_body_is_empty_file(base: str, tmp_path: Path) -> None:
    assert refused(f"{base}/empty", tmp_path).code == "empty_file"


def test_content_length_over_the_limit(base: str, tmp_path: Path) -> None:
    started = time.monotonic()
    assert refused(f"{base}/huge", tmp_path).code == "file_too_large"
    assert time.monotonic() - started < 2


def test_body_over_the_limit_stops_the_download(
    http_server: tuple[str, State], tmp_path: Path
) -> None:
    base, state = http_server
    assert refused(f"{base}/endless", tmp_path).code == "file_too_large"
    assert state.endless_done.wait(5)
    assert state.endless_sent < ENDLESS_CAP  # the server was cut off, not read to the end


def test_slow_server_is_fetch_timeout(base: str, tmp_path: Path) -> None:
    started = time.monotonic()
    assert refused(f"{base}/slow", tmp_path, timeout_s=0.5).code == "fetch_timeout"
    assert time.monotonic() - started < 2


def test_deadline_covers_the_whole_body(base: str, tmp_path: Path) -> None:
    # 100 bytes, one per 50 ms: no single read waits 0.5 s, the whole takes 5 s.
    started = time.monotonic()
    assert refused(f"{base}/trickle", tmp_path, timeout_s=0.5).code == "fetch_timeout"
    assert time.monotonic() - started < 2


def test_connection_refused_is_fetch_failed(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        assert refused(f"http://127.0.0.1:{port}/v.mp4", tmp_path).code == "fetch_failed"


def test_unresolvable_host_is_fetch_failed(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 6761).
    error = refused("http://no-such-host.invalid/v.mp4", tmp_path, allow_private=False)
    assert error.code == "fetch_failed"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/video.mp4", "file:///etc/passwd", "example.com/video.mp4"],
)
def test_only_http_and_https(url: str, tmp_path: Path) -> None:
    assert refused(url, tmp_path).code == "url_not_allowed"


def test_credentials_in_the_url_are_refused(base: str, tmp_path: Path) -> None:
    url = base.replace("http://", "http://user:secret@") + "/video.mp4"
    assert refused(url, tmp_path).code == "url_not_allowed"


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata address
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
    ],
)
def test_private_addresses_are_refused(host: str, kind: str, base: str, tmp_path: Path) -> None:
    port = base.rsplit(":", 1)[1]
    error = refused(f"http://{host}:{port}/video.mp4", tmp_path, allow_private=False)
    assert error.code == "url_not_allowed"
    assert f"a {kind} address" in error.message
