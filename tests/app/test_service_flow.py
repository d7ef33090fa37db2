"""The whole flow over HTTP, against a real API process, worker process and redis-server: once
with the videos in the API's data folder, once in S3 (a real SeaweedFS) with no folder shared
by the API and the worker."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SERVICE_MODEL, Service, service_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["local", "s3"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp(f"service-{request.param}")
    with service_for(request, root, SERVICE_MODEL) as svc:
        yield svc


def upload(client: httpx.Client, path: Path, **fields: Any) -> httpx.Response:
    """POST /v1/videos with ``path`` as the `file` field."""
    with path.open("rb") as f:
        return client.post(
            "/v1/videos",
            files={"file": (path.name, f, "video/mp4")},
            data={k: str(v) for k, v in fields.items()},
        )


def finished(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Long-polls a job until it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 20})
        assert response.status_code == 200, response.text
        job = response.json()
        if job["state"] in ("succeeded", "failed", "canceled"):
            return job  # type: ignore[no-any-return]
    raise TimeoutError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def captioned(service: Any, make_video: Any) -> dict[str, Any]:
    """A 4 s video with audio uploaded by alice and captioned (segments of 2 s)."""
    with service.client() as client:
        response = upload(client, make_video("h264_aac_mp4", duration=4), segment_seconds=2)
        assert response.status_code == 202, response.text
        body = response.json()
        job = finished(client, body["job"]["id"])
        assert job["state"] == "succeeded", (job, service.logs())
        return {**body, "finished": job}


def test_upload_answers_202_with_video_job_and_location(service: Any, make_video: Any) -> None:
    with service.client() as client:
        response = upload(client, make_video("vp9_opus_webm", duration=2))
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/videos/{body['video']['id']}"
    assert body["video"]["media"]["container"] == "webm"
    assert body["video"]["media"]["has_audio"] is True
    assert body["video"]["status"] in ("queued", "processing")
    assert body["job"]["kind"] == "caption"
    assert body["job"]["video_id"] == body["video"]["id"]
    assert response.headers["x-request-id"]


def test_caption_job_reports_stages_timings_and_result(captioned: dict[str, Any]) -> None:
    job = captioned["finished"]
    assert job["percent"] == 100
    assert job["stage"] is None
    assert set(job["timings"]) >= {"decoding", "features", "fusion", "generating"}
    assert all(seconds >= 0 for seconds in job["timings"].values())
    result = job["result"]
    assert isinstance(result["caption"], str)
    spans = [(s["start"], s["end"]) for s in result["segments"]]
    assert spans == [(0.0, 2.0), (2.0, 4.0)]
    assert job["started_at"] <= job["finished_at"]


def test_video_shows_status_caption_and_segments(service: Any, captioned: dict[str, Any]) -> None:
    video_id = captioned["video"]["id"]
    with service.client() as client:
        video = client.get(f"/v1/videos/{video_id}").json()
    assert video["status"] == "ready"
    assert video["caption"] == captioned["finished"]["result"]["caption"]
    assert video["segments"] == captioned["finished"]["result"]["segments"]
    assert video["media"]["duration_s"] == pytest.approx(4, abs=0.1)
    assert video["options"]["segment_seconds"] == 2


def test_captions_as_json_vtt_and_srt(service: Any, captioned: dict[str, Any]) -> None:
    video_id = captioned["video"]["id"]
    segments = captioned["finished"]["result"]["segments"]
    with service.client() as client:
        as_json = client.get(f"/v1/videos/{video_id}/captions").json()
        vtt = client.get(f"/v1/videos/{video_id}/captions", params={"format": "vtt"})
        srt = client.get(f"/v1/videos/{video_id}/captions", params={"format": "srt"})
    assert as_json["segments"] == segments
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n")
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", vtt.text)
    assert cues == [("00:00:00.000", "00:00:02.000"), ("00:00:02.000", "00:00:04.000")]
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.text.startswith("1\n00:00:00,000 --> 00:00:02,000\n")


def test_question_is_answered_from_cached_features_without_decoding(
    service: Any, captioned: dict[str, Any]
) -> None:
    video_id = captioned["video"]["id"]
    # Remove the video file itself: only the stored features can answer now.
    prefix = f"videos/alice/{video_id}/"
    stored = service.stored(prefix)
    sources = [k for k in stored if k.startswith(prefix + "source.")]
    assert sources and prefix + "features.safetensors" in stored
    for source in sources:
        service.remove(source)
    with service.client() as client:
        response = client.post(
            f"/v1/videos/{video_id}/questions", json={"question": "what colour is the square?"}
        )
        assert response.status_code == 202, response.text
        assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
        job = finished(client, response.json()["id"])
        listed = client.get(f"/v1/videos/{video_id}/questions").json()["questions"]
    assert job["state"] == "succeeded", job
    assert job["result"]["question"] == "what colour is the square?"
    assert isinstance(job["result"]["answer"], str)
    assert "decoding" not in job["timings"]
    assert [q["id"] for q in listed][-1] == job["id"]


def test_list_is_newest_first_and_paginates(service: Any, make_video: Any) -> None:
    with service.client("bob") as client:
        ids = []
        for seconds in (1, 2, 3):
            response = upload(client, make_video("h264_aac_mp4", duration=seconds))
            ids.append(response.json()["video"]["id"])
        first = client.get("/v1/videos", params={"limit": 2}).json()
        second = client.get(
            "/v1/videos", params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
    assert [v["id"] for v in first["videos"]] == ids[::-1][:2]
    assert [v["id"] for v in second["videos"]] == ids[::-1][2:]
    assert second["next_cursor"] is None
    assert all(v["status"] in ("queued", "processing", "ready") for v in first["videos"])


def test_other_tenants_ids_are_404_and_bad_keys_401(
    service: Any, captioned: dict[str, Any]
) -> None:
    video_id, job_id = captioned["video"]["id"], captioned["job"]["id"]
    with service.client("bob") as bob:
        for path in (
            f"/v1/videos/{video_id}",
            f"/v1/jobs/{job_id}",
            f"/v1/videos/{video_id}/captions",
        ):
            response = bob.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] in ("video_not_found", "job_not_found")
        assert bob.delete(f"/v1/videos/{video_id}").status_code == 404
        assert video_id not in {v["id"] for v in bob.get("/v1/videos").json()["videos"]}
    with service.client(None) as anonymous:
        response = anonymous.get(f"/v1/videos/{video_id}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.get("/v1/videos", headers={"Authorization": "Bearer not-a-key-at-all"})
        assert wrong.status_code == 401


def test_idempotency_key_returns_the_same_video_and_job(service: Any, make_video: Any) -> None:
    path = make_video("h264_aac_mp4", duration=2, width=96)
    with service.client() as client:
        first = upload_with_key(client, path, "retry-42")
        again = upload_with_key(client, path, "retry-42")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["video"]["id"] == first.json()["video"]["id"]
    assert again.json()["job"]["id"] == first.json()["job"]["id"]


def test_an_idempotency_key_reused_for_other_bytes_is_422(service: Any, make_video: Any) -> None:
    first_path = make_video("h264_aac_mp4", duration=2, width=80)
    other_path = make_video("h264_aac_mp4", duration=2, width=64)
    with service.client() as client:
        first = upload_with_key(client, first_path, "reused-7")
        other = upload_with_key(client, other_path, "reused-7")
        videos = client.get("/v1/videos", params={"limit": 100}).json()["videos"]
    assert first.status_code == 202
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # It was not stored, and nothing of it is left in the upload spool.
    assert sum(v["size_bytes"] == other_path.stat().st_size for v in videos) == 0
    assert list((service.data_dir / "uploads").iterdir()) == []


def test_a_question_retried_with_its_idempotency_key_is_asked_once(
    service: Any, captioned: dict[str, Any]
) -> None:
    video_id = captioned["video"]["id"]
    path = f"/v1/videos/{video_id}/questions"
    key = {"Idempotency-Key": "question-retry-1"}
    with service.client() as client:
        first = client.post(path, json={"question": "what colour is it?"}, headers=key)
        again = client.post(path, json={"question": "what colour is it?"}, headers=key)
        other = client.post(path, json={"question": "what sound plays?"}, headers=key)
        asked = client.get(path).json()["questions"]
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert [q["id"] for q in asked].count(first.json()["id"]) == 1
    assert sum(q["question"] == "what sound plays?" for q in asked) == 0


def upload_with_key(client: httpx.Client, path: Path, key: str) -> httpx.Response:
    with path.open("rb") as f:
        return client.post(
            "/v1/videos", files={"file": (path.name, f)}, headers={"Idempotency-Key": key}
        )


def test_same_bytes_reuse_the_stored_video(service: Any, make_video: Any) -> None:
    path = make_video("h264_aac_mp4", duration=2, width=112)
    with service.client() as client:
        first = upload(client, path)
        again = upload(client, path)
        other_options = upload(client, path, frames_per_second=2)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["video"]["id"] == first.json()["video"]["id"]
    assert other_options.status_code == 202
    assert other_options.json()["video"]["id"] != first.json()["video"]["id"]
    stored = {key.split("/")[2] for key in service.stored("videos/alice/")}
    assert first.json()["video"]["id"] in stored


def test_same_bytes_uploaded_at_once_are_stored_once(service: Any, make_video: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = make_video("h264_aac_mp4", duration=2, width=144)

    def send(_: int) -> httpx.Response:
        with service.client() as client:
            return upload(client, path)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(send, range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
    assert len({r.json()["video"]["id"] for r in responses}) == 1
    assert len({r.json()["job"]["id"] for r in responses}) == 1


def test_events_stream_until_the_final_state(service: Any, make_video: Any) -> None:
    with service.client() as client:
        job_id = upload(client, make_video("h264_aac_mp4", duration=3)).json()["job"]["id"]
        states = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    states.append(json.loads(line[6:])["state"])
    assert states[-1] == "succeeded"
    assert states.count("succeeded") == 1


def test_long_poll_waits_for_the_end(service: Any, make_video: Any) -> None:
    with service.client() as client:
        job_id = upload(client, make_video("h264_aac_mp4", duration=3)).json()["job"]["id"]
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
    assert job["state"] == "succeeded"


def test_cancel_a_queued_job(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=0)  # nothing takes the job off the queue
    with service.client() as client:
        job = upload(client, make_video("h264_aac_mp4", duration=2)).json()["job"]
        canceled = client.post(f"/v1/jobs/{job['id']}/cancel")
        again = client.post(f"/v1/jobs/{job['id']}/cancel")
        video = client.get(f"/v1/videos/{job['video_id']}").json()
    assert canceled.status_code == 202
    assert canceled.json()["state"] == "canceled"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_finished"
    assert video["status"] == "canceled"


def test_delete_removes_file_features_records_and_questions(service: Any, make_video: Any) -> None:
    with service.client() as client:
        body = upload(client, make_video("h264_aac_mp4", duration=2, height=72)).json()
        video_id = body["video"]["id"]
        finished(client, body["job"]["id"])
        prefix = f"videos/alice/{video_id}/"
        assert prefix + "features.safetensors" in service.stored(prefix)
        assert client.delete(f"/v1/videos/{video_id}").status_code == 204
        assert client.get(f"/v1/videos/{video_id}").status_code == 404
        assert client.get(f"/v1/jobs/{body['job']['id']}").status_code == 404
        assert client.delete(f"/v1/videos/{video_id}").status_code == 404
    assert service.stored(prefix) == []


def test_health_readiness_and_metrics(service: Any, captioned: dict[str, Any]) -> None:
    with service.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok", "workers": None}
        anonymous = client.get("/readyz").json()
        metrics = client.get("/metrics").text
    with service.client() as client:
        ready = client.get("/readyz").json()
    # Anyone learns whether the service is ready; only a key holder sees its workers.
    assert anonymous == {"status": "ready", "workers": None}
    assert ready["status"] == "ready" and len(ready["workers"]) == 1
    assert {"name", "model"} <= ready["workers"][0].keys()
    assert 'vidcap_jobs_finished_total{kind="caption",state="succeeded"}' in metrics
    assert "vidcap_queue_depth" in metrics
    assert 'vidcap_stage_duration_seconds_count{stage="decoding"}' in metrics


def test_openapi_documents_the_error_shape(service: Any) -> None:
    with httpx.Client(base_url=service.url) as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    upload_op = spec["paths"]["/v1/videos"]["post"]
    assert {"202", "413", "415", "422", "429"} <= set(upload_op["responses"])
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    assert "ErrorBody" in spec["components"]["schemas"]


def test_media_plays_with_ranges_from_either_store(
    service: Any, captioned: dict[str, Any], make_video: Any
) -> None:
    path = make_video("h264_aac_mp4", duration=2, width=160)
    with service.client() as client:
        body = upload(client, path).json()
        assert finished(client, body["job"]["id"])["state"] == "succeeded"
        media_url = client.get(f"/v1/videos/{body['video']['id']}").json()["media_url"]
        first = client.get(media_url, headers={"Range": "bytes=0-99"})
        followed = client.get(media_url, headers={"Range": "bytes=100-1099"}, follow_redirects=True)
    data = path.read_bytes()
    if service.s3 is None:
        assert first.status_code == 206 and first.content == data[:100]
    else:  # the API checks the tenant and the link, then S3 serves the bytes
        assert first.status_code == 307
        assert first.headers["location"].startswith(service.s3.endpoint)
    assert followed.status_code == 206
    assert followed.content == data[100:1100]
    assert followed.headers["content-type"] == "video/mp4"


def test_each_store_keeps_the_files_where_it_says(service: Any, captioned: dict[str, Any]) -> None:
    assert captioned["finished"]["state"] == "succeeded"
    prefix = f"videos/alice/{captioned['video']['id']}/"
    stored = service.stored(prefix)
    assert prefix + "features.safetensors" in stored  # what the worker wrote, stored
    local = sorted(
        p.relative_to(service.data_dir).as_posix()
        for p in service.data_dir.rglob("*")
        if p.is_file()
    )
    if service.s3 is None:  # the local store is the shared data folder itself
        assert set(stored) <= set(local)
        return
    # With S3 the worker downloaded the video into scratch and removed it after the job; the
    # API kept nothing but its (empty) upload spool: no folder is shared, none is needed.
    assert [p for p in service.worker_dir(0).rglob("*") if p.is_file()] == []
    assert local == []
