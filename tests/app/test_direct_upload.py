"""Direct uploads to S3 (a real SeaweedFS): the client PUTs the bytes on presigned links, in
one piece or in parts, resumes an interrupted multipart upload, and completes; the worker
probes what arrived. Bad completions are refused with stable codes and lose nothing."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.test_service_flow import finished
from tests.conftest import SERVICE_MODEL, Service

pytestmark = pytest.mark.slow

PART_MB = 5  # S3's least part size: a 12 MB file goes in three parts


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> Iterator[Service]:
    svc = Service(
        tmp_path_factory.mktemp("direct"),
        SERVICE_MODEL,
        env={"VIDCAP_DIRECT_UPLOAD_PART_MB": str(PART_MB)},
        s3=s3_server,
    )
    try:
        yield svc.start(workers=1)
    finally:
        svc.stop()


def start(client: httpx.Client, name: str, size: int, **options: Any) -> httpx.Response:
    return client.post("/v1/videos/direct", json={"filename": name, "size_bytes": size, **options})


def test_a_video_sent_to_s3_in_one_put_is_probed_and_captioned(
    direct: Service, make_video: Any
) -> None:
    path = make_video("h264_aac_mp4", duration=2)
    data = path.read_bytes()
    with direct.client() as client:
        started = start(client, "holiday.mp4", len(data), segment_seconds=1)
        assert started.status_code == 201, started.text
        body = started.json()
        video_id, upload = body["video"]["id"], body["upload"]
        assert body["video"]["status"] == "uploading"
        assert body["video"]["media"] is None and body["video"]["caption_job_id"] is None
        assert upload["parts"] is None and upload["url"].startswith(direct.s3.endpoint)
        early = client.post(f"/v1/videos/{video_id}/questions", json={"question": "what?"})
        assert httpx.put(upload["url"], content=data).status_code == 200  # straight to S3
        done = client.post(upload["complete_url"])
        assert done.status_code == 202, done.text
        job = finished(client, done.json()["job"]["id"])
        again = client.post(upload["complete_url"])  # a retried completion
        video = client.get(f"/v1/videos/{video_id}").json()
    assert early.status_code == 409 and early.json()["error"]["code"] == "video_not_ready"
    assert job["state"] == "succeeded", (job, direct.logs())
    assert again.status_code == 200 and again.json()["job"]["id"] == job["id"]
    assert video["status"] == "ready" and video["caption"]
    assert [(s["start"], s["end"]) for s in video["segments"]] == [(0.0, 1.0), (1.0, 2.0)]
    assert video["media"]["container"] == "mp4" and video["media"]["duration_s"] > 1.5
    assert video["sha256"] == hashlib.sha256(data).hexdigest()
    assert video["filename"] == "holiday.mp4"
    # Stored under the probed container's name; the upload's name is gone.
    prefix = f"videos/alice/{video_id}/"
    assert prefix + "source.mp4" in direct.stored(prefix)
    assert prefix + "upload" not in direct.stored(prefix)


def test_a_multipart_upload_resumes_and_its_parts_join_in_order(
    direct: Service, tmp_path: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024 + 12345)  # not a video: the worker will say so
    part = PART_MB * 1024 * 1024
    with direct.client() as client:
        body = start(client, "big.mov", len(data)).json()
        video_id, upload = body["video"]["id"], body["upload"]
        assert upload["url"] is None and upload["part_bytes"] == part
        parts = upload["parts"]
        assert [p["number"] for p in parts] == [1, 2, 3]
        assert not any(p["uploaded"] for p in parts)
        for number in (3, 1):  # out of order, and part 2 "lost" with the connection
            chunk = data[(number - 1) * part : number * part]
            assert httpx.put(parts[number - 1]["url"], content=chunk).status_code == 200
        early = client.post(upload["complete_url"])
        resumed = client.get(f"/v1/videos/{video_id}/upload").json()["upload"]
        assert [p["uploaded"] for p in resumed["parts"]] == [True, False, True]
        assert httpx.put(resumed["parts"][1]["url"], content=data[part : 2 * part]).is_success
        done = client.post(upload["complete_url"])
        assert done.status_code == 202, done.text
        stored = direct.stored(f"videos/alice/{video_id}/")
        job = finished(client, done.json()["job"]["id"])
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "upload_incomplete"
    assert "2 (of 3)" in early.json()["error"]["message"]
    assert stored == [f"videos/alice/{video_id}/upload"]
    # The worker probed what was joined and refused it, as the API refuses a streamed upload;
    # the useless bytes are gone from the store.
    assert job["state"] == "failed" and job["error"]["code"] == "not_a_video", job
    assert direct.stored(f"videos/alice/{video_id}/") == []


def test_the_joined_object_holds_the_bytes_in_order(
    s3_server: Any, make_service: Any, tmp_path: Path
) -> None:
    service = make_service(workers=0, env={"VIDCAP_DIRECT_UPLOAD_PART_MB": "5"}, s3=s3_server)
    data = os.urandom(11 * 1024 * 1024)
    with service.client() as client:
        upload = start(client, "x.mp4", len(data)).json()["upload"]
        part = upload["part_bytes"]
        for p in reversed(upload["parts"]):
            chunk = data[(p["number"] - 1) * part : p["number"] * part]
            assert httpx.put(p["url"], content=chunk).is_success
        assert client.post(upload["complete_url"]).status_code == 202
    (key,) = service.stored()
    assert service.storage.fetch(key, tmp_path / "joined")
    assert (tmp_path / "joined").read_bytes() == data


def test_bad_direct_uploads_are_refused_and_leave_nothing(
    direct: Service, service: Service
) -> None:
    with direct.client() as client:
        huge = start(client, "huge.mp4", 10 * 1024**4)  # 10 TB
        nothing = start(client, "n.mp4", 1000).json()
        unsent = client.post(nothing["upload"]["complete_url"])
        short = start(client, "short.mp4", 1000).json()
        assert httpx.put(short["upload"]["url"], content=b"x" * 500).is_success
        mismatch = client.post(short["upload"]["complete_url"])
        pending = start(client, "p.mp4", 11 * 1024 * 1024).json()
        deleted = client.delete(f"/v1/videos/{pending['video']['id']}")
        bad_field = client.post("/v1/videos/direct", json={"filename": "a.mp4"})
    with service.client() as local:  # a service whose store is a local folder
        unavailable = start(local, "a.mp4", 1000)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "file_too_large"
    assert unsent.status_code == 409 and unsent.json()["error"]["code"] == "upload_incomplete"
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "upload_size_mismatch"
    assert direct.stored(f"videos/alice/{short['video']['id']}/") == []  # discarded
    assert deleted.status_code == 204
    bucket = direct.env["VIDCAP_S3_BUCKET"]
    uploads = direct.s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert pending["video"]["id"] not in str(uploads)  # its multipart upload was aborted
    assert bad_field.status_code == 422
    assert bad_field.json()["error"]["code"] == "validation_error"
    assert unavailable.status_code == 409
    assert unavailable.json()["error"]["code"] == "direct_upload_unavailable"


class Interrupted(Exception):
    """The user stopped the upload (as Ctrl-C would)."""


def test_the_client_uploads_directly_and_resumes_an_interrupted_upload(
    direct: Service, make_video: Any, tmp_path: Path
) -> None:
    import redis

    from vidcap.client import VidcapClient
    from workers.store import video_key

    records = redis.Redis.from_url(direct.redis.url, decode_responses=True)
    small = make_video("h264_aac_mp4", duration=1, width=96)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    part = PART_MB * 1024 * 1024
    seen: list[tuple[int, int]] = []

    def stop_after_first_part(sent: int, total: int) -> None:
        seen.append((sent, total))
        if sent > part:
            raise Interrupted()

    with VidcapClient(direct.url, "key-alice-0001") as client:
        created = client.upload(small, resume_dir=tmp_path / "state")
        job = client.wait(created["job"]["id"], timeout=120)
        with pytest.raises(Interrupted):
            client.upload(big, resume_dir=tmp_path / "state", on_progress=stop_after_first_part)
        # What the client remembers of the unfinished upload: its video.
        (state,) = (tmp_path / "state").iterdir()
        first_id = json.loads(state.read_text())["video_id"]
        assert seen[0] == (0, big.stat().st_size)
        progress: list[int] = []
        resumed = client.upload(
            big, resume_dir=tmp_path / "state", on_progress=lambda s, _t: progress.append(s)
        )
    assert job["state"] == "succeeded", (job, direct.logs())
    assert json.loads(records.get(video_key(created["video"]["id"])))["direct"] is True
    # The second call went on with the same video, from the first part on.
    assert resumed["video"]["id"] == first_id
    assert progress[0] == part and progress[-1] == big.stat().st_size
    assert list((tmp_path / "state").iterdir()) == []  # nothing left to resume
    (key,) = direct.stored(f"videos/alice/{first_id}/")
    assert direct.storage.fetch(key, tmp_path / "joined")
    assert (tmp_path / "joined").read_bytes() == big.read_bytes()


def test_the_server_says_which_uploads_it_takes(direct: Service, service: Service) -> None:
    with direct.client() as client:
        s3 = client.get("/v1/uploads").json()
    with service.client() as client:
        local = client.get("/v1/uploads").json()
    assert s3 == {"direct": True, "max_upload_bytes": 2048 * 1024**2, "part_bytes": 5 * 1024**2}
    assert local == {"direct": False, "max_upload_bytes": 2048 * 1024**2, "part_bytes": None}
