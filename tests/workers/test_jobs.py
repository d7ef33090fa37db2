"""Job limits and control: timeouts, cancelling a running job, the janitor."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tests.app.test_service_flow import finished
from tests.workers.test_faults import long_job, running_worker_pid
from workers.store import Store

pytestmark = pytest.mark.slow


def test_a_job_over_its_time_limit_fails_with_job_timeout(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(
        workers=1, env={"VIDCAP_JOB_TIMEOUT_BASE_S": "1", "VIDCAP_JOB_TIMEOUT_PER_VIDEO_S": "0"}
    )
    with service.client() as client:
        job_id = long_job(client, make_video)
        job = finished(client, job_id)
        assert client.get("/readyz").status_code == 200  # the worker survived it
    assert job["state"] == "failed"
    assert job["error"]["code"] == "job_timeout"


def test_cancel_a_running_job_stops_it_at_the_next_stage(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=1)
    with service.client() as client:
        job_id = long_job(client, make_video)
        running_worker_pid(service, job_id)
        response = client.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202
        assert response.json()["cancel_requested"] is True
        job = finished(client, job_id)
        video = client.get(f"/v1/videos/{job['video_id']}").json()
    assert job["state"] == "canceled"
    assert job["error"]["code"] == "canceled"
    assert video["status"] == "canceled"


def test_a_timeout_wrapped_by_a_library_still_counts_as_a_timeout() -> None:
    from rapidocr_onnxruntime.utils.infer_engine import ONNXRuntimeError
    from rq.timeouts import JobTimeoutException

    from workers.tasks import timed_out

    def wrapped() -> None:  # what RapidOCR's engine does with any exception inside a run
        try:
            raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")
        except Exception as e:
            raise ONNXRuntimeError("inference failed") from e

    with pytest.raises(ONNXRuntimeError) as caught:
        wrapped()
    assert timed_out(caught.value)
    assert not timed_out(RuntimeError("a bug"))


def test_everything_a_video_leaves_goes_when_its_retention_ends(
    make_service: Any, make_video: Any
) -> None:
    from tests.app.test_service_flow import upload

    retention_s = 20
    service = make_service(
        env={
            "VIDCAP_RETENTION_DAYS": str(retention_s / 86400),
            "VIDCAP_JANITOR_INTERVAL_S": "1",
        }
    )
    with service.client() as client:
        body = upload(client, make_video("h264_aac_mp4", duration=2)).json()
        video_id = body["video"]["id"]
        assert finished(client, body["job"]["id"])["state"] == "succeeded"
        asked = client.post(
            f"/v1/videos/{video_id}/questions",
            json={"question": "what colour is it?"},
            headers={"Idempotency-Key": "retention-1"},
        ).json()
        assert finished(client, asked["id"])["state"] == "succeeded"
    done = time.monotonic()
    ids = (video_id, body["job"]["id"], asked["id"])
    db = redis.Redis.from_url(service.redis.url, decode_responses=True)

    def left() -> dict[str, list[str]]:
        keys = sorted(db.scan_iter("*"))
        return {
            "files": sorted(str(p) for p in (service.data_dir / "videos").rglob("*")),
            "keys": [
                k for k in keys
                if any(i in k for i in ids) or k.startswith(("rq:job:", "vidcap:tenant:"))
                or any(i in (db.get(k) or "") for i in ids if db.type(k) == "string")
            ],
        }  # fmt: skip

    assert left()["files"] and left()["keys"]  # all there while the video is kept
    deadline = done + retention_s + 20  # its retention, then a few janitor rounds
    while (remains := left()) != {"files": [], "keys": []}:
        assert time.monotonic() < deadline, remains
        time.sleep(1)
    db.close()


def test_a_job_is_lost_only_when_its_heartbeat_is_missing_twice_a_beat_apart(
    redis_server: Any,
) -> None:
    from rq import Queue

    from settings import Settings
    from workers.queue import reap
    from workers.store import RUNNING_KEY, alive_key, job_key

    settings = Settings(worker_lost_after_s=3, max_attempts=2)  # a beat every second
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    store = Store(client, 600)
    queue = Queue("vidcap-test", connection=redis.Redis.from_url(redis_server.url))
    for job_id in ("job_lost", "job_back"):
        record = {"id": job_id, "kind": "caption", "state": "running", "attempts": 2}
        store.put(job_key(job_id), record)
        client.sadd(RUNNING_KEY, job_id)
    assert reap(store, queue, settings) == []  # first seen missing: not yet
    client.set(alive_key("job_back"), "rq-id", ex=3)  # its worker renews its key
    assert reap(store, queue, settings) == []  # a beat has not passed
    time.sleep(1.2)
    assert reap(store, queue, settings) == ["job_lost"]  # missing twice, a beat apart
    assert store.job("job_lost")["state"] == "failed"  # its last attempt: worker_lost
    assert store.job("job_back")["state"] == "running"
    assert client.sismember(RUNNING_KEY, "job_back")
