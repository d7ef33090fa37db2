"""vidcap.client and ``vidcap caption/ask --server``, against a real API, worker and Redis."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEYS
from vidcap.client import VidcapClient, VidcapError

pytestmark = pytest.mark.slow

STATE_ORDER = ["queued", "running", "succeeded"]


def closed_port_url() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def vidcap(*args: str, api_key: str | None = API_KEYS["alice"]) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m vidcap ARGS`` as a user would."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIDCAP_SERVER", "VIDCAP_API_KEY")}
    if api_key is not None:
        env["VIDCAP_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "vidcap", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


@pytest.fixture(scope="module")
def client(service: Any) -> Iterator[VidcapClient]:
    """Alice's client of the module's service."""
    with VidcapClient(service.url, API_KEYS["alice"]) as c:
        yield c


@pytest.fixture(scope="module")
def captioned(client: VidcapClient, make_video: Any) -> dict[str, Any]:
    """A 2 s video uploaded with the client and followed to its end, with what was reported."""
    path = make_video("h264_aac_mp4", duration=2)
    progress: list[tuple[int, int]] = []
    updates: list[dict[str, Any]] = []
    created = client.upload(
        path, segment_seconds=1, on_progress=lambda sent, total: progress.append((sent, total))
    )
    job = client.wait(created["job"]["id"], timeout=120, on_update=updates.append)
    return {
        "path": path,
        "created": created,
        "progress": progress,
        "updates": updates,
        "job": job,
    }


# ---------------------------------------------------------------------- the client


def test_upload_streams_the_file_and_reports_progress(captioned: dict[str, Any]) -> None:
    size = captioned["path"].stat().st_size
    progress = captioned["progress"]
    assert progress[0] == (0, size)
    assert progress[-1] == (size, size)
    sent = [s for s, _ in progress]
    assert sent == sorted(sent)
    assert {total for _, total in progress} == {size}
    created = captioned["created"]
    assert created["video"]["size_bytes"] == size
    assert created["video"]["filename"] == captioned["path"].name
    assert created["video"]["options"]["segment_seconds"] == 1
    assert created["job"]["kind"] == "caption"


def test_progress_comes_per_mebibyte_chunk(
    client: VidcapClient, tmp_path: Path, make_video: Any
) -> None:
    # A valid video padded past 2 MiB (an mp4 reader ignores trailing bytes).
    path = tmp_path / "padded.mp4"
    path.write_bytes(make_video("h264_aac_mp4", duration=1).read_bytes() + b"\0" * (5 << 19))
    progress: list[int] = []
    try:
        client.upload(path, on_progress=lambda sent, total: progress.append(sent))
    except VidcapError as e:  # the server may refuse the padding; the streaming is the point
        assert e.status is not None and e.status < 500, e
    size = path.stat().st_size
    assert progress[:3] == [0, 1 << 20, 2 << 20]
    assert progress[-1] == size


def test_wait_follows_the_job_to_success(captioned: dict[str, Any]) -> None:
    job, updates = captioned["job"], captioned["updates"]
    assert job["state"] == "succeeded", job
    assert updates[-1] == job
    states = [u["state"] for u in updates]
    assert states[-1] == "succeeded"
    assert [STATE_ORDER.index(s) for s in states] == sorted(STATE_ORDER.index(s) for s in states)
    # (percent is not asserted monotonic: the server may report a stage twice, see the report)
    assert updates[-1]["percent"] == 100
    assert all(a != b for a, b in itertools.pairwise(updates))
    assert isinstance(job["result"]["caption"], str)
    assert [(s["start"], s["end"]) for s in job["result"]["segments"]] == [(0, 1), (1, 2)]


def test_wait_on_a_finished_job_returns_it_at_once(
    client: VidcapClient, captioned: dict[str, Any]
) -> None:
    updates: list[dict[str, Any]] = []
    job = client.wait(captioned["job"]["id"], timeout=10, on_update=updates.append)
    assert job == captioned["job"] and updates == [job]
    assert client.job(job["id"]) == job


def test_wait_falls_back_to_long_polling_when_the_stream_breaks(
    client: VidcapClient, captioned: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job_id: str, deadline: float | None) -> Iterator[dict[str, Any]]:
        raise httpx.RemoteProtocolError("peer closed connection")
        yield {}  # a generator, like the real one

    monkeypatch.setattr(client, "_events", broken)
    question = client.ask(captioned["created"]["video"]["id"], "which sound plays?")
    updates: list[dict[str, Any]] = []
    job = client.wait(question["id"], timeout=120, on_update=updates.append)
    assert job["state"] == "succeeded", job
    assert updates[-1] == job
    assert isinstance(job["result"]["answer"], str)


def test_video_list_and_captions(client: VidcapClient, captioned: dict[str, Any]) -> None:
    video_id = captioned["created"]["video"]["id"]
    video = client.video(video_id)
    assert video["status"] == "ready"
    assert video["caption"] == captioned["job"]["result"]["caption"]
    assert video_id in {v["id"] for v in client.videos(limit=100)["videos"]}
    as_json = client.captions(video_id)
    assert isinstance(as_json, dict)
    assert as_json["segments"] == captioned["job"]["result"]["segments"]
    vtt = client.captions(video_id, format="vtt")
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT\n")
    assert "00:00:00.000 --> 00:00:01.000" in vtt
    srt = client.captions(video_id, format="srt")
    assert isinstance(srt, str) and srt.startswith("1\n00:00:00,000 --> 00:00:01,000\n")
    # a tone, no speech: the description is the only track, and the default one
    assert as_json["track"] == "description" and as_json["caption"] == video["caption"]
    assert client.captions(video_id, track="description") == as_json
    assert set(video["tracks"]) == {"description"}
    with pytest.raises(VidcapError) as info:
        client.captions(video_id, format="vtt", track="speech")
    assert (info.value.code, info.value.status) == ("track_not_found", 404)
    assert video["transcript"]["segments"] == []
    assert video["translation"] is None


def test_upload_speech_options(client: VidcapClient, make_video: Any) -> None:
    path = make_video("h264_aac_mp4", duration=1, width=112)
    created = client.upload(path, language="de", translate=True)
    assert created["video"]["options"]["language"] == "de"
    assert created["video"]["options"]["translate"] is True
    with pytest.raises(VidcapError) as info:
        client.upload(path, language="klingon")
    assert (info.value.code, info.value.status) == ("validation_error", 422)
    assert "language" in info.value.message
    try:  # no need to spend the worker on it
        client.cancel(created["job"]["id"])
    except VidcapError as e:
        assert e.code == "job_finished"


def test_ask_and_wait_gives_an_answer(client: VidcapClient, captioned: dict[str, Any]) -> None:
    video_id = captioned["created"]["video"]["id"]
    queued = client.ask(video_id, "what colour is the picture?")
    assert queued["kind"] == "question" and queued["video_id"] == video_id
    job = client.wait(queued["id"], timeout=120)
    assert job["state"] == "succeeded", job
    assert job["result"]["question"] == "what colour is the picture?"
    assert isinstance(job["result"]["answer"], str)
    assert queued["id"] in [q["id"] for q in client.questions(video_id)]


def test_api_errors_raise_vidcap_error_with_the_code(
    service: Any, client: VidcapClient, captioned: dict[str, Any]
) -> None:
    with pytest.raises(VidcapError) as info:
        client.video("vid_does_not_exist")
    assert (info.value.code, info.value.status) == ("video_not_found", 404)
    assert info.value.message and info.value.request_id
    with pytest.raises(VidcapError) as info:
        client.wait("job_does_not_exist", timeout=10)
    assert (info.value.code, info.value.status) == ("job_not_found", 404)
    with pytest.raises(VidcapError) as info:
        client.cancel(captioned["job"]["id"])
    assert (info.value.code, info.value.status) == ("job_finished", 409)
    with VidcapClient(service.url, "not-a-key") as stranger, pytest.raises(VidcapError) as info:
        stranger.videos()
    assert (info.value.code, info.value.status) == ("unauthorized", 401)
    # another tenant's id is answered like an unknown one
    with VidcapClient(service.url, API_KEYS["bob"]) as bob, pytest.raises(VidcapError) as info:
        bob.video(captioned["created"]["video"]["id"])
    assert info.value.code == "video_not_found"


def test_refused_upload_raises_with_the_media_code(client: VidcapClient, make_video: Any) -> None:
    with pytest.raises(VidcapError) as info:
        client.upload(make_video("text"))
    assert info.value.code == "not_a_video"
    assert info.value.status is not None and 400 <= info.value.status < 500


def test_the_key_comes_from_the_environment(service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDCAP_API_KEY", API_KEYS["bob"])
    with VidcapClient(service.url) as bob:
        assert "videos" in bob.videos()
    monkeypatch.delenv("VIDCAP_API_KEY")
    with VidcapClient(service.url) as anonymous, pytest.raises(VidcapError) as info:
        anonymous.videos()
    assert info.value.code == "unauthorized"


def test_unreachable_server_raises_server_unreachable() -> None:
    with VidcapClient(closed_port_url(), "k", timeout=5) as c, pytest.raises(VidcapError) as info:
        c.videos()
    assert info.value.code == "server_unreachable" and info.value.status is None


def test_idempotency_key_returns_the_first_upload(client: VidcapClient, make_video: Any) -> None:
    path = make_video("h264_aac_mp4", duration=1, width=96)
    first = client.upload(path, idempotency_key="client-retry-1")
    again = client.upload(path, idempotency_key="client-retry-1")
    assert again["video"]["id"] == first["video"]["id"], (first, again)
    assert again["job"]["id"] == first["job"]["id"]


def test_upload_url_then_delete(client: VidcapClient, make_video: Any, tmp_path: Path) -> None:
    # The server fetches the video (private addresses are allowed in the tests).
    (tmp_path / "clip.webm").write_bytes(make_video("vp9_opus_webm", duration=1).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/clip.webm"
        fetched = client.upload_url(url, segment_seconds=0.5)
    finally:
        httpd.shutdown()
        httpd.server_close()
    video_id = fetched["video"]["id"]
    assert fetched["video"]["options"]["segment_seconds"] == 0.5
    assert client.wait(fetched["job"]["id"], timeout=120)["state"] == "succeeded"
    client.delete(video_id)
    with pytest.raises(VidcapError) as info:
        client.video(video_id)
    assert info.value.code == "video_not_found"
    with pytest.raises(VidcapError) as info:
        client.delete(video_id)
    assert (info.value.code, info.value.status) == ("video_not_found", 404)


def test_oversized_upload_timeout_and_cancel(
    make_service: Any, make_video: Any, tmp_path: Path
) -> None:
    # No worker: jobs stay queued. Uploads are capped at 0.5 MB.
    service = make_service(workers=0, env={"VIDCAP_MAX_UPLOAD_MB": "0.5"})
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 << 20))
    with VidcapClient(service.url, API_KEYS["alice"]) as c:
        with pytest.raises(VidcapError) as info:
            c.upload(big)
        assert (info.value.code, info.value.status) == ("file_too_large", 413)

        job = c.upload(make_video("h264_aac_mp4", duration=1))["job"]
        with pytest.raises(VidcapError) as info:
            c.wait(job["id"], timeout=1.5)
        assert info.value.code == "wait_timeout"
        assert c.cancel(job["id"])["state"] == "canceled"
        updates: list[dict[str, Any]] = []
        final = c.wait(job["id"], timeout=10, on_update=updates.append)
        assert final["state"] == "canceled" and final["error"]["code"] == "canceled"
        assert updates == [final]


# ---------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cli_captioned(service: Any, make_video: Any) -> dict[str, Any]:
    """``vidcap caption FILE --server URL --segments 1 --json``: its output."""
    path = make_video("h264_aac_mp4", duration=2, height=96)
    result = vidcap("caption", str(path), "--server", service.url, "--segments", "1", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr, service.logs())
    return {"stdout": json.loads(result.stdout), "stderr": result.stderr}


def test_cli_caption_with_server_prints_json_and_shows_progress(
    cli_captioned: dict[str, Any],
) -> None:
    out = cli_captioned["stdout"]
    assert {
        "video_id",
        "job_id",
        "caption",
        "segments",
        "transcript",
        "translation",
        "on_screen_text",
        "tags",
        "timings_s",
    } <= set(out)
    assert out["transcript"]["segments"] == [] and out["translation"] is None
    assert isinstance(out["tags"]["video"], list)
    assert isinstance(out["caption"], str)
    assert [(s["start"], s["end"]) for s in out["segments"]] == [(0, 1), (1, 2)]
    assert {"upload", "total"} <= set(out["timings_s"])
    stderr = cli_captioned["stderr"]
    assert "upload" in stderr and "100%" in stderr
    assert "generating" in stderr or "succeeded" in stderr


def test_cli_caption_with_server_prints_a_summary_for_people(service: Any, make_video: Any) -> None:
    path = make_video("h264_aac_mp4", duration=2, height=96)  # the same bytes: stored once
    result = vidcap("caption", str(path), "--server", service.url, "--segments", "1")
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = result.stdout
    assert out.startswith("video vid_")
    assert "\nDescription:\n" in out and "  0:00.0-0:01.0  " in out
    assert "\nSpeech: nothing is said\n" in out
    assert "\nOn-screen text" in out and "\nTags: " in out


def test_cli_caption_with_server_prints_the_transcript(
    service: Any, client: VidcapClient, real_data: Path
) -> None:
    path = real_data / "derived" / "photo_dog_speech.mp4"
    result = vidcap("caption", str(path), "--server", service.url, "--language", "en")
    assert result.returncode == 0, (result.stdout, result.stderr, service.logs())
    out = result.stdout
    speech = out[out.index("\nSpeech (language en") :]
    line = next(x for x in speech.splitlines() if "greasy" in x.lower())
    assert re.match(r"  0:0\d\.\d-0:0\d\.\d  \S", line), line
    assert "greasy wash" in line.lower()
    assert "\nTags: " in out

    video_id = out.split()[1]
    video = client.video(video_id)
    assert video["options"]["language"] == "en"
    assert next(iter(video["tracks"])) == "speech"
    vtt = client.captions(video_id, format="vtt")  # the default track: the speech
    assert isinstance(vtt, str) and "greasy wash" in " ".join(vtt.lower().split())
    as_json = client.captions(video_id, track="speech")
    assert isinstance(as_json, dict)
    assert as_json["track"] == "speech" and as_json["language"] == "en"
    assert as_json["caption"] is None and as_json["segments"]


def test_cli_ask_with_server_prints_the_answer(service: Any, cli_captioned: dict[str, Any]) -> None:
    video_id = cli_captioned["stdout"]["video_id"]
    result = vidcap("ask", video_id, "which sound plays?", "--server", service.url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = json.loads(result.stdout)
    assert out["video_id"] == video_id and out["job_id"]
    assert out["question"] == "which sound plays?"
    assert isinstance(out["answer"], str)


def test_cli_api_errors_print_json_and_exit_2(service: Any, make_video: Any) -> None:
    result = vidcap("ask", "vid_nope", "what?", "--server", service.url)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "video_not_found"

    result = vidcap("caption", str(make_video("text")), "--server", service.url)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "not_a_video"

    path = str(make_video("h264_aac_mp4", duration=1))
    result = vidcap("caption", path, "--server", service.url, api_key="wrong-key")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "unauthorized"


def test_cli_against_a_closed_port_exits_2_with_json(make_video: Any) -> None:
    path = str(make_video("h264_aac_mp4", duration=1))
    result = vidcap("caption", path, "--server", closed_port_url())
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "server_unreachable" and "127.0.0.1" in error["message"]


def test_cli_refuses_local_only_options_with_server(make_video: Any, tmp_path: Path) -> None:
    path = str(make_video("h264_aac_mp4", duration=1))
    url = closed_port_url()
    for extra in (["--save", str(tmp_path / "f.safetensors")], ["--model", str(tmp_path)]):
        result = vidcap("caption", path, "--server", url, *extra)
        assert result.returncode == 2
        assert "--server" in result.stderr and result.stdout == ""
    result = vidcap("ask", "vid_x", "what?", "--server", url, "--device", "cpu")
    assert result.returncode == 2 and "--server" in result.stderr
