"""Bad input over HTTP: the right status and code, and nothing left behind (file or record)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import API_KEYS

pytestmark = pytest.mark.slow

SMALL_LIMIT_MB = 2
IDLE_S = 2


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An API with a 2 MB upload limit, a 5 s duration limit and bodies that must not stall
    for 2 s (no worker needed)."""
    from tests.conftest import SERVICE_MODEL, Service

    service = Service(
        tmp_path_factory.mktemp("limited"),
        SERVICE_MODEL,
        {
            "VIDCAP_MAX_UPLOAD_MB": str(SMALL_LIMIT_MB),
            "VIDCAP_MEDIA_MAX_DURATION_S": "5",
            "VIDCAP_BODY_IDLE_S": str(IDLE_S),
        },
    )
    try:
        yield service.start(workers=0)
    finally:
        service.stop()


def leftovers(service: Any) -> dict[str, list[str]]:
    """Files under the data folder and vidcap records in Redis (counters aside)."""
    client = redis.Redis.from_url(service.redis.url, decode_responses=True)
    try:
        keys = sorted(
            k
            for k in client.scan_iter("vidcap:*")
            if not k.startswith(("vidcap:rate:", "vidcap:metrics:"))
        )
    finally:
        client.close()
    files = sorted(
        str(p.relative_to(service.data_dir)) for p in service.data_dir.rglob("*") if p.is_file()
    )
    return {"files": files, "keys": keys}


def post_file(service: Any, name: str, content: bytes | Path, **kwargs: Any) -> httpx.Response:
    data = content.read_bytes() if isinstance(content, Path) else content
    with service.client() as client:
        return client.post("/v1/videos", files={"file": (name, data)}, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("random_bytes", 415, "not_a_video"),
        ("text", 415, "not_a_video"),
        ("audio_only", 415, "no_video_stream"),
        ("truncated", 422, "corrupt_media"),
    ],
)
def test_broken_files_are_refused_and_leave_nothing(
    limited: Any, make_video: Any, kind: str, status: int, code: str
) -> None:
    response = post_file(limited, f"{kind}.mp4", make_video(kind))
    assert_error(response, status, code)
    assert leftovers(limited) == {"files": [], "keys": []}


def test_zero_bytes_is_refused(limited: Any) -> None:
    assert_error(post_file(limited, "empty.mp4", b""), 422, "empty_file")
    assert leftovers(limited) == {"files": [], "keys": []}


def test_over_the_duration_limit(limited: Any, make_video: Any) -> None:
    response = post_file(limited, "long.mp4", make_video("h264_aac_mp4", duration=6))
    assert_error(response, 422, "video_too_long")
    assert leftovers(limited) == {"files": [], "keys": []}


def test_unsupported_container(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=0, env={"VIDCAP_MEDIA_CONTAINERS": "mov"})
    response = post_file(service, "clip.webm", make_video("vp9_opus_webm", duration=1))
    assert_error(response, 415, "unsupported_container")
    assert leftovers(service) == {"files": [], "keys": []}


def test_over_the_size_limit_is_413_before_the_body_ends(limited: Any) -> None:
    # A chunked body (no Content-Length) that goes past the limit and never ends: the server
    # must answer 413 while the client is still "sending".
    import socket

    head = (
        "POST /v1/videos HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {API_KEYS['alice']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    chunk = b"\0" * 65536
    with socket.create_connection(("127.0.0.1", limited.port), timeout=30) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        for _ in range(SMALL_LIMIT_MB * 16 + 8):  # the limit plus 512 KiB
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break  # the server closed the connection after answering
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "file_too_large"
    assert leftovers(limited) == {"files": [], "keys": []}


def test_content_length_over_the_limit_is_413_at_once(limited: Any) -> None:
    response = post_file(limited, "big.mp4", b"\0" * (SMALL_LIMIT_MB * 1024 * 1024 + 2_000_000))
    assert_error(response, 413, "file_too_large")
    assert leftovers(limited) == {"files": [], "keys": []}


def test_missing_file_field(limited: Any) -> None:
    with limited.client() as client:
        response = client.post("/v1/videos", data={"segment_seconds": "2"}, files={"x": b"1"})
    assert_error(response, 422, "missing_file")


def test_bad_json_body(limited: Any) -> None:
    with limited.client() as client:
        broken = client.post(
            "/v1/videos", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        no_url = client.post("/v1/videos", json={"segment_seconds": 2})
        text = client.post("/v1/videos", content=b"hi", headers={"Content-Type": "text/plain"})
    assert_error(broken, 400, "invalid_json")
    assert_error(no_url, 422, "validation_error")
    assert_error(text, 415, "unsupported_media_type")


def test_json_nested_too_deep_is_invalid_json_not_a_crash(limited: Any) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    headers = {"Content-Type": "application/json"}
    with limited.client() as client:
        upload = client.post("/v1/videos", content=deep, headers=headers)
        question = client.post("/v1/videos/vid_x/questions", content=deep, headers=headers)
    assert_error(upload, 400, "invalid_json")
    assert_error(question, 400, "invalid_json")
    assert leftovers(limited) == {"files": [], "keys": []}


def test_a_wrong_method_says_which_methods_the_path_takes(limited: Any) -> None:
    with limited.client() as client:
        response = client.put("/healthz")
        videos = client.put("/v1/videos")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    assert_error(videos, 405, "method_not_allowed")
    assert set(videos.headers["allow"].split(", ")) == {"GET", "POST"}  # list and upload


def test_an_upload_is_stored_by_what_it_is_and_never_served_for_sniffing(
    limited: Any, make_video: Any
) -> None:
    # The client calls its mp4 "page.html": stored and offered as an mp4, never as HTML.
    response = post_file(limited, "page.html", make_video("h264_aac_mp4", duration=1))
    assert response.status_code == 202, response.text
    video = response.json()["video"]
    stored = list(limited.data_dir.glob(f"videos/alice/{video['id']}/source.*"))
    assert [p.name for p in stored] == ["source.mp4"]
    with limited.client() as client:
        media = client.get(f"/v1/videos/{video['id']}/media")
        missing = client.get("/v1/videos/vid_missing")
        assert client.delete(f"/v1/videos/{video['id']}").status_code == 204
    assert media.status_code == 200 and media.headers["content-type"] == "video/mp4"
    assert media.headers["x-content-type-options"] == "nosniff"
    assert media.headers["content-disposition"] == f'inline; filename="{video["id"]}.mp4"'
    assert missing.headers["x-content-type-options"] == "nosniff"  # every response says it


def test_a_client_that_drops_mid_upload_is_one_info_line_and_leaves_nothing(
    limited: Any,
) -> None:
    log = limited.root / "api.log"
    tracebacks = log.read_text(errors="replace").count("Traceback")
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    request = (
        "POST /v1/videos HTTP/1.1\r\nHost: test\r\nX-Request-ID: dropped-upload-1\r\n"
        f"Authorization: Bearer {API_KEYS['alice']}\r\nContent-Length: 1000000\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(request + head + bytes(300_000))  # then the client is gone
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "dropped-upload-1" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, limited.logs()
        time.sleep(0.1)
    lines = [x for x in log.read_text(errors="replace").splitlines() if "dropped-upload-1" in x]
    assert len(lines) == 1 and " INFO " in lines[0] and "went away" in lines[0], lines
    assert log.read_text(errors="replace").count("Traceback") == tracebacks
    assert leftovers(limited) == {"files": [], "keys": []}


def raw(
    service: Any,
    head: str,
    body: bytes = b"",
    drip: bytes = b"",
    every_s: float = 0.3,
    limit_s: float = 15,
) -> tuple[int, dict[str, Any], float]:
    """Sends a request head and the start of its body over a plain socket, then ``drip`` a
    byte at a time (or nothing), until the server answers. Returns the status, the JSON body
    and the seconds the answer took after the last full write."""
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        began = time.monotonic()
        sock.settimeout(every_s)
        reply, left = b"", iter(drip)
        while time.monotonic() - began < limit_s:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                byte = next(left, None)
                if byte is not None:
                    sock.sendall(bytes([byte]))
                continue
            if not chunk:
                break
            reply += chunk
            if b"\r\n\r\n" in reply and reply.rstrip().endswith(b"}"):
                break
    took = time.monotonic() - began
    status = int(reply.split(b" ", 2)[1])
    payload = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    return status, payload, took


def _head(method: str, path: str, length: int, kind: str, key: str | None = "alice") -> str:
    auth = f"Authorization: Bearer {API_KEYS[key]}\n" if key else ""
    return (
        f"{method} {path} HTTP/1.1\nHost: test\n{auth}Content-Type: {kind}\n"
        f"Content-Length: {length}\n"
    )


def _upload_start() -> tuple[str, bytes]:
    """The head of alice's upload promising 1 MB, and its body's start (the file part's)."""
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    head = _head("POST", "/v1/videos", 1_000_000, f"multipart/form-data; boundary={boundary}")
    return head, part


def test_a_body_without_a_key_is_refused_before_it_is_read(limited: Any) -> None:
    # 300 MB promised, 64 KiB sent: the answer must not wait for the rest (it used to read
    # it all into memory first, then answer 401).
    head = _head("POST", "/v1/videos/vid_x/questions", 300_000_000, "application/json", None)
    status, body, _ = raw(limited, head, b"{" + b" " * 65536)
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_a_json_body_over_its_limit_is_413_at_once_or_as_it_streams(limited: Any) -> None:
    head = _head("POST", "/v1/videos/vid_x/questions", 10_737_418_240, "application/json")
    status, body, _ = raw(limited, head)  # 10 GB promised, nothing sent
    assert status == 413 and body["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: stopped once it passes 64 KiB
        yield b'{"question": "'
        for _ in range(100):
            yield b"x" * 4096

    with limited.client() as client:
        streamed = client.post(
            "/v1/videos/vid_x/questions",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
    assert_error(streamed, 413, "body_too_large")


def test_a_stalled_or_crawling_body_is_408_and_leaves_nothing(limited: Any) -> None:
    question = _head("POST", "/v1/videos/vid_x/questions", 100, "application/json")
    status, body, took = raw(limited, question, b'{"question"')  # then nothing
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert took < IDLE_S + 5
    upload, part = _upload_start()
    stalled = raw(limited, upload, part + bytes(200_000))
    crawling = raw(limited, upload, part + bytes(1000), drip=bytes(200))  # ~3 bytes a second
    for status, body, _ in (stalled, crawling):
        assert status == 408 and body["error"]["code"] == "request_timeout", body
    assert "slowly" in crawling[1]["error"]["message"]
    assert leftovers(limited) == {"files": [], "keys": []}  # the partial uploads are gone


def test_one_tenant_streams_at_most_four_uploads_at_once(limited: Any, make_video: Any) -> None:
    head, part = _upload_start()
    arriving = []
    for _ in range(4):  # four uploads of alice's, still arriving
        sock = socket.create_connection(("127.0.0.1", limited.port))
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + part + bytes(1000))
        arriving.append(sock)
    try:
        time.sleep(0.3)
        fifth = post_file(limited, "five.mp4", make_video("h264_aac_mp4", duration=1))
        bobs = post_file(limited, "bob.mp4", make_video("h264_aac_mp4", duration=1), headers={
            "Authorization": f"Bearer {API_KEYS['bob']}"
        })  # fmt: skip
    finally:
        for sock in arriving:
            sock.close()
    assert_error(fifth, 429, "rate_limited")
    assert int(fifth.headers["retry-after"]) > 0
    assert bobs.status_code == 202, bobs.text  # other tenants are not held up
    with limited.client("bob") as client:
        assert client.delete(f"/v1/videos/{bobs.json()['video']['id']}").status_code == 204
    time.sleep(0.5)
    assert leftovers(limited) == {"files": [], "keys": []}


def test_bad_option_is_refused(limited: Any, make_video: Any) -> None:
    response = post_file(
        limited, "clip.mp4", make_video("h264_aac_mp4", duration=1), data={"segment_seconds": "0"}
    )
    assert_error(response, 422, "validation_error")
    assert "segment_seconds" in response.json()["error"]["message"]
    assert leftovers(limited) == {"files": [], "keys": []}


def test_unknown_ids(limited: Any) -> None:
    with limited.client() as client:
        assert_error(client.get("/v1/videos/vid_nope"), 404, "video_not_found")
        assert_error(client.get("/v1/jobs/job_nope"), 404, "job_not_found")
        assert_error(client.post("/v1/jobs/job_nope/cancel"), 404, "job_not_found")
        assert_error(client.get("/v1/nothing-here"), 404, "not_found")
        assert_error(
            client.post("/v1/videos/vid_nope/questions", json={"question": "why?"}),
            404,
            "video_not_found",
        )


def test_question_before_the_video_is_ready(limited: Any, make_video: Any) -> None:
    video = post_file(limited, "clip.mp4", make_video("h264_aac_mp4", duration=1)).json()["video"]
    with limited.client() as client:
        early = client.post(f"/v1/videos/{video['id']}/questions", json={"question": "what?"})
        blank = client.post(f"/v1/videos/{video['id']}/questions", json={"question": "   "})
        captions = client.get(f"/v1/videos/{video['id']}/captions")
        client.delete(f"/v1/videos/{video['id']}")
    assert_error(early, 409, "video_not_ready")
    assert_error(blank, 422, "validation_error")
    assert_error(captions, 409, "video_not_ready")
    assert leftovers(limited) == {"files": [], "keys": []}


def test_redis_out_of_memory_is_507_store_full_and_changes_nothing(
    limited: Any, make_video: Any
) -> None:
    video = post_file(limited, "clip.mp4", make_video("h264_aac_mp4", duration=1)).json()["video"]
    before = leftovers(limited)
    admin = redis.Redis.from_url(limited.redis.url)
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)  # every write that needs memory is refused (OOM)
    try:
        upload = post_file(limited, "other.mp4", make_video("h264_aac_mp4", duration=2))
        with limited.client() as client:
            question = client.post(
                f"/v1/videos/{video['id']}/questions", json={"question": "what?"}
            )
            delete = client.delete(f"/v1/videos/{video['id']}")
            read = client.get(f"/v1/videos/{video['id']}")
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", policy)
        admin.close()
    for response in (upload, question, delete):
        assert_error(response, 507, "store_full")
        assert int(response.headers["retry-after"]) > 0
    # Nothing half done: no new file or record, and the video is whole.
    assert read.status_code == 200 and leftovers(limited) == before
    with limited.client() as client:
        assert client.delete(f"/v1/videos/{video['id']}").status_code == 204


def test_a_stalled_redis_gets_503_in_seconds_not_a_hung_request(
    limited: Any, make_video: Any
) -> None:
    video = post_file(limited, "clip.mp4", make_video("h264_aac_mp4", duration=1)).json()["video"]
    job = video["caption_job_id"]
    pid = limited.redis.pid
    os.kill(pid, signal.SIGSTOP)  # Redis holds every connection and answers nothing
    try:
        # A client that waited for Redis would hit this timeout (it used to hang for the
        # whole stall); the API must answer well within it.
        with limited.client(timeout=8) as client:
            began = time.monotonic()
            answers = {
                "poll": client.get(f"/v1/jobs/{job}"),
                "video": client.get(f"/v1/videos/{video['id']}"),
                "question": client.post(
                    f"/v1/videos/{video['id']}/questions", json={"question": "what?"}
                ),
                "upload": client.post("/v1/videos", files={"file": ("a.mp4", b"x" * 1000)}),
            }
            with limited.client(None, timeout=8) as anonymous:
                answers["readyz"] = anonymous.get("/readyz")
            seconds = time.monotonic() - began
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"5 requests during a Redis stall answered in {seconds:.1f} s")
    for name, response in answers.items():
        assert response.status_code == 503, (name, response.text)
        assert_error(response, 503, "redis_unavailable")
        assert int(response.headers["retry-after"]) > 0
    with limited.client() as client:  # and all is well once Redis answers again
        assert client.get(f"/v1/videos/{video['id']}").status_code == 200
        assert client.delete(f"/v1/videos/{video['id']}").status_code == 204
    assert leftovers(limited) == {"files": [], "keys": []}


def test_video_without_audio_is_accepted_and_captioned(service: Any, make_video: Any) -> None:
    from tests.app.test_service_flow import finished, upload

    with service.client() as client:
        response = upload(client, make_video("h264_aac_mp4", duration=2, audio_codec=None))
        assert response.status_code == 202, response.text
        assert response.json()["video"]["media"]["has_audio"] is False
        job = finished(client, response.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["caption"] is not None


class _Files(BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server(make_video: Any) -> Iterator[str]:
    clip = make_video("h264_aac_mp4", duration=2)
    handler = type("Files", (_Files,), {"root": clip.parent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{clip.name}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_upload_is_fetched_and_captioned(service: Any, file_server: str) -> None:
    from tests.app.test_service_flow import finished

    with service.client() as client:
        response = client.post("/v1/videos", json={"url": file_server, "segment_seconds": 1})
        assert response.status_code == 202, response.text
        job = finished(client, response.json()["job"]["id"])
        missing = client.post("/v1/videos", json={"url": file_server + ".missing"})
        ftp = client.post("/v1/videos", json={"url": "ftp://example.com/a.mp4"})
    assert job["state"] == "succeeded"
    assert len(job["result"]["segments"]) == 2
    assert_error(missing, 422, "fetch_failed")
    assert ftp.status_code == 422
    assert ftp.json()["error"]["code"] in ("url_not_allowed", "validation_error")


def test_queue_full_and_rate_limit_answer_429(make_service: Any, make_video: Any) -> None:
    service = make_service(
        workers=0, env={"VIDCAP_MAX_QUEUE_DEPTH": "1", "VIDCAP_RATE_LIMIT_PER_MINUTE": "3"}
    )
    clip = make_video("h264_aac_mp4", duration=1)
    first = post_file(service, "a.mp4", clip)
    full = post_file(service, "b.mp4", clip)
    assert first.status_code == 202
    assert_error(full, 429, "queue_full")
    assert int(full.headers["retry-after"]) > 0
    limited = post_file(service, "c.mp4", clip)  # the third POST this minute is still allowed
    assert_error(limited, 429, "queue_full")
    over = post_file(service, "d.mp4", clip)
    assert_error(over, 429, "rate_limited")
    assert 0 < int(over.headers["retry-after"]) <= 60
