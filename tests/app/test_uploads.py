"""receive_multipart behind a real uvicorn server: what is stored, what is refused, what is left."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.errors import ApiError
from app.uploads import receive_multipart, safe_filename

MiB = 1024 * 1024


@dataclass
class Harness:
    """What the test server's route reads (dest_dir, max_bytes) and records (outcomes)."""

    dest_dir: Path = Path("/nonexistent")
    max_bytes: int = MiB
    outcomes: list[str] = field(default_factory=list)  # "ok", an error code or "disconnect"
    answered: threading.Event = field(default_factory=threading.Event)

    def record(self, outcome: str) -> None:
        self.outcomes.append(outcome)
        self.answered.set()


@dataclass
class Server:
    harness: Harness
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/upload"


def make_app(harness: Harness) -> Starlette:
    async def upload(request: Request) -> Response:
        try:
            received = await receive_multipart(request, harness.dest_dir, harness.max_bytes)
        except ApiError as exc:
            harness.record(exc.code)
            return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
        except ClientDisconnect:
            harness.record("disconnect")
            return Response(status_code=400)  # nobody is listening
        harness.record("ok")
        return JSONResponse(
            {
                "path": str(received.path),
                "size": received.size,
                "sha256": received.sha256,
                "filename": received.filename,
                "fields": received.fields,
            }
        )

    return Starlette(routes=[Route("/upload", upload, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A real uvicorn server (h11, as deployed) on a free port, in a background thread."""
    harness = Harness()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(harness), log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Server(harness, port)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def srv(server: Server, tmp_path: Path) -> Server:
    """The module's server, reset for this test: a fresh dest_dir, a 1 MiB limit."""
    h = server.harness
    h.dest_dir = tmp_path / "spool"
    h.max_bytes = MiB
    h.outcomes.clear()
    h.answered.clear()
    return server


def leftovers(dest_dir: Path) -> list[str]:
    return sorted(p.name for p in dest_dir.iterdir()) if dest_dir.exists() else []


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def multipart_head(boundary: str, filename: str = "clip.mp4", name: str = "file") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()


def raw_post(port: int, headers: dict[str, str]) -> socket.socket:
    """A socket that has sent ``POST /upload`` with ``headers`` (and no body yet)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    lines = ["POST /upload HTTP/1.1", "Host: test"] + [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


# ------------------------------------------------------------------ accepted uploads


def test_file_and_fields_are_stored_with_size_and_hash(srv: Server) -> None:
    srv.harness.max_bytes = 8 * MiB
    boundary = "vidcap-test-boundary-0123456789"
    # Several MiB (more blocks than the writer keeps in flight), with near-boundaries in it
    # to exercise the parser's look-behind.
    data = os.urandom(3 * MiB + 12345) + f"\r\n--{boundary[:10]}".encode() + os.urandom(1000)
    with httpx.Client(timeout=10) as client:
        r = client.post(
            srv.url,
            files={"file": ("clip.mp4", data, "video/mp4")},
            data={"lang": "en", "note": "héllo wörld"},
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    path = Path(body["path"])
    assert path.parent == srv.harness.dest_dir
    assert path.name.startswith(".upload-") and path.name.endswith(".part")
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    assert body["filename"] == "clip.mp4"
    assert body["fields"] == {"lang": "en", "note": "héllo wörld"}
    assert leftovers(srv.harness.dest_dir) == [path.name]  # just the one file, for the caller


def test_filename_with_directories_becomes_a_basename(srv: Server) -> None:
    with httpx.Client(timeout=10) as client:
        r = client.post(srv.url, files={"file": ("../../etc/passwd", b"abc", "video/mp4")})
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == "passwd"
    assert Path(r.json()["path"]).parent == srv.harness.dest_dir


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.mp4", "clip.mp4"),
        ("a\x00b\x1f\u202ec.mp4", "abc.mp4"),  # NUL, a control char, a bidi override
        ("..", None),
        ("dir/", None),
        ("", None),
        (None, None),
        ("x" * 300 + ".mp4", "x" * 196 + ".mp4"),
    ],
)
def test_safe_filename(sent: str | None, kept: str | None) -> None:
    assert safe_filename(sent) == kept


# ------------------------------------------------------------------ refused uploads


def post_refused(srv: Server, **kwargs: Any) -> tuple[int, str]:
    with httpx.Client(timeout=10) as client:
        r = client.post(srv.url, **kwargs)
    assert leftovers(srv.harness.dest_dir) == []
    return r.status_code, r.json()["code"]


def test_no_file_part_is_missing_file(srv: Server) -> None:
    assert post_refused(srv, files={"lang": (None, "en")}) == (422, "missing_file")


def test_file_in_another_field_is_missing_file(srv: Server) -> None:
    assert post_refused(srv, files={"video": ("a.mp4", b"abc")}) == (422, "missing_file")


def test_zero_bytes_is_empty_file(srv: Server) -> None:
    assert post_refused(srv, files={"file": ("a.mp4", b"")}) == (422, "empty_file")


def test_not_multipart_is_unsupported_media_type(srv: Server) -> None:
    assert post_refused(srv, json={"file": "x"}) == (415, "unsupported_media_type")
    headers = {"Content-Type": "multipart/form-data"}  # no boundary
    assert post_refused(srv, content=b"x", headers=headers) == (415, "unsupported_media_type")


def test_too_many_fields_is_a_validation_error(srv: Server) -> None:
    files = {f"f{i}": (None, "v") for i in range(17)} | {"file": ("a.mp4", b"abc")}
    assert post_refused(srv, files=files) == (422, "validation_error")


def test_large_field_is_a_validation_error(srv: Server) -> None:
    files = {"note": (None, "x" * (8 * 1024 + 1)), "file": ("a.mp4", b"abc")}
    assert post_refused(srv, files=files) == (422, "validation_error")


def test_two_file_parts_are_a_validation_error(srv: Server) -> None:
    files = [("file", ("a.mp4", b"abc")), ("file", ("b.mp4", b"def"))]
    assert post_refused(srv, files=files) == (422, "validation_error")


def test_malformed_body_is_a_validation_error(srv: Server) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    assert post_refused(srv, content=b"this is not multipart", headers=headers) == (
        422,
        "validation_error",
    )


def test_truncated_body_is_refused_and_its_file_removed(srv: Server) -> None:
    # The file part starts (so a file is created) but the closing boundary never comes.
    body = multipart_head("xyz") + os.urandom(100_000)
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    assert post_refused(srv, content=body, headers=headers) == (422, "validation_error")


def test_file_over_the_limit_is_refused_before_the_body_ends(srv: Server) -> None:
    srv.harness.max_bytes = 256 * 1024
    boundary = "xyz"
    chunk = os.urandom(64 * 1024)
    total_chunks = 1024  # 64 MiB: far more than any socket buffer holds
    yielded = {"chunks": 0, "ended": False}

    def body() -> Iterator[bytes]:
        # No Content-Length (a generator is sent chunked), so only the stream can tell.
        yield multipart_head(boundary)
        for _ in range(total_chunks):
            # Well past the limit, the server must answer without the rest. If it waited for
            # the whole body, this wait would time out and the assertions below fail.
            past_limit = yielded["chunks"] * len(chunk) > srv.harness.max_bytes + 4 * len(chunk)
            if past_limit and srv.harness.answered.wait(timeout=10):
                return
            yield chunk
            yielded["chunks"] += 1
        yield f"\r\n--{boundary}--\r\n".encode()
        yielded["ended"] = True

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status = None
    # The server may close the connection after answering, before the client reads it.
    closed = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
    with httpx.Client(timeout=10) as client, contextlib.suppress(*closed):
        status = client.post(srv.url, content=body(), headers=headers).status_code
    assert srv.harness.outcomes == ["file_too_large"]
    assert not yielded["ended"]
    assert yielded["chunks"] < 16
    assert status in (413, None)
    assert leftovers(srv.harness.dest_dir) == []


def test_nothing_after_the_closing_boundary_is_read(srv: Server) -> None:
    boundary = "xyz"
    state = {"answered_first": False}

    def body() -> Iterator[bytes]:
        yield multipart_head(boundary) + b"video bytes" + f"\r\n--{boundary}--\r\n".encode()
        # An epilogue that would never end: the server must answer without waiting for it.
        state["answered_first"] = srv.harness.answered.wait(timeout=10)
        yield b"epilogue " * 1000

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    closed = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
    with httpx.Client(timeout=10) as client, contextlib.suppress(*closed):
        client.post(srv.url, content=body(), headers=headers)
    assert state["answered_first"]
    assert srv.harness.outcomes == ["ok"]


def test_content_length_over_the_limit_is_refused_before_reading(srv: Server) -> None:
    srv.harness.max_bytes = MiB
    headers = {
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(3 * MiB),
    }
    with raw_post(srv.port, headers) as sock:  # not one byte of body is sent
        assert read_status(sock) == 413
    assert srv.harness.outcomes == ["file_too_large"]
    assert leftovers(srv.harness.dest_dir) == []


def test_client_disconnect_leaves_no_file(srv: Server) -> None:
    srv.harness.max_bytes = 8 * MiB
    headers = {
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(4 * MiB),
    }
    sock = raw_post(srv.port, headers)
    try:
        sock.sendall(multipart_head("xyz") + os.urandom(200_000))
        # The file part has begun: its temporary file exists.
        assert wait_until(lambda: len(leftovers(srv.harness.dest_dir)) == 1)
    finally:
        sock.close()
    assert wait_until(lambda: srv.harness.outcomes == ["disconnect"])
    assert wait_until(lambda: leftovers(srv.harness.dest_dir) == [])


def test_cancellation_leaves_no_file(tmp_path: Path) -> None:
    """A cancelled handler (server shutdown, a timeout) leaves no file either."""
    dest = tmp_path / "spool"
    first = multipart_head("xyz") + os.urandom(3 * MiB)  # enough for blocks in flight

    async def main() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": first, "more_body": True}
            await asyncio.Event().wait()  # the rest of the body never comes
            raise AssertionError("unreachable")

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/upload",
            "headers": [(b"content-type", b"multipart/form-data; boundary=xyz")],
        }
        task = asyncio.create_task(receive_multipart(Request(scope, receive), dest, 8 * MiB))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if leftovers(dest):
                break
        assert len(leftovers(dest)) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert wait_until(lambda: leftovers(dest) == [])
