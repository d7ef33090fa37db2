"""Faults: workers killed or stopped mid-job, and Redis restarted, with real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
import redis

from tests.app.test_service_flow import finished, upload

pytestmark = pytest.mark.slow

LOST_AFTER_S = 3  # heartbeat lease in these tests (the default is 15 s)


def long_job(client: Any, make_video: Any) -> str:
    """Uploads a video whose captioning takes several seconds; returns its job id.

    40 s sampled at 10 frames a second: 400 frames through the backbones, in 34 windows.
    """
    video = make_video("h264_aac_mp4", duration=40, width=160, height=120)
    response = upload(client, video, frames_per_second=10)
    assert response.status_code == 202, response.text
    return str(response.json()["job"]["id"])


def running_worker_pid(service: Any, job_id: str, timeout: float = 60) -> int:
    """Waits until a worker runs the job; returns that worker's pid."""
    client = redis.Redis.from_url(service.redis.url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            record = json.loads(client.get(f"vidcap:job:{job_id}") or "{}")
            if record.get("state") == "running" and record.get("worker"):
                return int(record["worker"]["pid"])
            time.sleep(0.01)
    finally:
        client.close()
    raise TimeoutError(f"job {job_id} never ran:\n{service.logs()}")


def test_worker_killed_mid_job_is_retried_on_another_worker(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=2, env={"VIDCAP_WORKER_LOST_AFTER_S": str(LOST_AFTER_S)})
    with service.client() as client:
        job_id = long_job(client, make_video)
        pid = running_worker_pid(service, job_id)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        job = finished(client, job_id)
    # Detected within the lease plus a reaper round (5 s), then run again from the start.
    assert job["state"] == "succeeded", (job, service.logs())
    assert job["attempts"] == 2
    assert time.monotonic() - killed_at < 60


def test_worker_killed_on_the_last_attempt_ends_worker_lost(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(
        workers=1,
        env={"VIDCAP_WORKER_LOST_AFTER_S": str(LOST_AFTER_S), "VIDCAP_MAX_ATTEMPTS": "1"},
    )
    with service.client() as client:
        job_id = long_job(client, make_video)
        os.kill(running_worker_pid(service, job_id), signal.SIGKILL)
        # No worker is left: the API's own reaper must end the job.
        job = finished(client, job_id, timeout=30)
        metrics = client.get("/metrics").text
    assert job["state"] == "failed"
    assert job["error"]["code"] == "worker_lost"
    assert 'vidcap_job_failures_total{kind="caption",code="worker_lost"} 1' in metrics


def test_sigterm_lets_the_current_job_finish(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=1)
    worker = service.workers[0]
    with service.client() as client:
        job_id = long_job(client, make_video)
        running_worker_pid(service, job_id)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded", (job, service.logs())
    assert job["attempts"] == 1


def test_redis_restart_loses_no_queued_job_or_result(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=0)
    with service.client() as client:
        body = upload(client, make_video("h264_aac_mp4", duration=2)).json()
        service.redis.restart()  # between enqueue and work
        service.start_worker()
        job = finished(client, body["job"]["id"])
        assert job["state"] == "succeeded", service.logs()
        service.redis.restart()  # after the result was written
        again = client.get(f"/v1/jobs/{body['job']['id']}")
        video = client.get(f"/v1/videos/{body['video']['id']}").json()
    assert again.status_code == 200
    assert again.json()["result"] == job["result"]
    assert video["status"] == "ready"


def test_a_second_sigterm_puts_the_job_back_at_once(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=1)
    worker = service.workers[0]
    with service.client() as client:
        job_id = long_job(client, make_video)
        running_worker_pid(service, job_id)
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # soon after the first (RQ on its own ignores one within 1 s)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        queued = client.get(f"/v1/jobs/{job_id}").json()
        assert (queued["state"], queued["attempts"]) == ("queued", 2), service.logs()
        service.start_worker()
        job = finished(client, job_id)
    assert job["state"] == "succeeded"


def test_redis_down_longer_than_the_client_waits_mid_job_requeues_it(
    make_service: Any, make_video: Any
) -> None:
    # A graceful restart that takes seconds (a big file to load): the running job's writes
    # fail after the client's retries. It used to end `failed` with `model_error`.
    service = make_service(workers=1, env={"VIDCAP_WORKER_LOST_AFTER_S": str(LOST_AFTER_S)})
    with service.client() as client:
        job_id = long_job(client, make_video)
        running_worker_pid(service, job_id)
        time.sleep(2)  # well into the job
        service.redis.stop()
        time.sleep(5)
        service.redis.start()
        job = finished(client, job_id, timeout=240)
    assert job["state"] == "succeeded", (job, service.logs())
    assert job["error"] is None


def test_a_redis_freeze_does_not_make_a_working_worker_lost(
    make_service: Any, make_video: Any
) -> None:
    # SIGSTOP longer than the heartbeat lease: every alive key expires the moment Redis runs
    # again. The worker is fine and renews its key; its job must not be run a second time.
    service = make_service(workers=1, env={"VIDCAP_WORKER_LOST_AFTER_S": str(LOST_AFTER_S)})
    with service.client() as client:
        job_id = long_job(client, make_video)
        running_worker_pid(service, job_id)
        os.kill(service.redis.pid, signal.SIGSTOP)
        time.sleep(3 * LOST_AFTER_S)
        os.kill(service.redis.pid, signal.SIGCONT)
        job = finished(client, job_id, timeout=240)
    assert job["state"] == "succeeded", (job, service.logs())
    assert job["attempts"] == 1, service.logs()
