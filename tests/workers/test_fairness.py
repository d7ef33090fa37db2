"""Tenants share the workers fairly: a backlog of one tenant does not stall another tenant's
job, one tenant's waiting jobs are capped, and a running cap leaves workers to others.
Real redis-server, API and worker processes (tests/conftest.py)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.app.test_bad_input import assert_error
from tests.app.test_service_flow import finished, upload

pytestmark = pytest.mark.slow


def wait_for_workers(service: Any, count: int, timeout: float = 120) -> None:
    with service.client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = client.get("/readyz").json()
            if len(ready.get("workers") or []) >= count:
                return
            time.sleep(0.2)
    raise TimeoutError(f"{count} workers not ready:\n{service.logs()}")


def test_one_tenants_backlog_does_not_hold_up_another_tenants_job(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=0)
    clip = make_video("h264_aac_mp4", duration=1)
    with service.client("alice") as alice, service.client("bob") as bob:
        backlog = []
        for seconds in range(1, 51):  # 50 videos (other options: no reuse of the first)
            response = upload(alice, clip, segment_seconds=seconds)
            assert response.status_code == 202, response.text
            backlog.append(response.json()["job"]["id"])
        theirs = upload(bob, clip)
        assert theirs.status_code == 202, theirs.text
        service.start_worker()  # one worker, 51 jobs waiting: 50 of alice's queued first
        job = finished(bob, theirs.json()["job"]["id"])
        started = [alice.get(f"/v1/jobs/{job_id}").json()["started_at"] for job_id in backlog]
    assert job["state"] == "succeeded", service.logs()
    ahead = [s for s in started if s is not None and s < job["started_at"]]
    assert len(ahead) <= 1, (started, job["started_at"])


def test_a_tenant_at_its_queue_limit_is_refused_while_others_still_queue(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=0, env={"VIDCAP_MAX_QUEUED_PER_TENANT": "2"})
    clip = make_video("h264_aac_mp4", duration=1)
    with service.client("alice") as alice, service.client("bob") as bob:
        queued = [upload(alice, clip, segment_seconds=s).status_code for s in (1, 2)]
        over = upload(alice, clip, segment_seconds=3)
        other = upload(bob, clip)
        metrics = alice.get("/metrics").text
        videos = alice.get("/v1/videos").json()
    assert queued == [202, 202]
    assert_error(over, 429, "tenant_queue_full")
    assert int(over.headers["retry-after"]) > 0
    assert other.status_code == 202, other.text
    assert 'vidcap_requests_rejected_total{code="tenant_queue_full"} 1' in metrics
    assert len(videos["videos"]) == 2  # the refused upload left nothing behind
    assert "vidcap_queue_depth 3" in metrics


def test_a_running_cap_leaves_the_other_workers_to_other_tenants(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=2, env={"VIDCAP_MAX_RUNNING_PER_TENANT": "1"})
    wait_for_workers(service, 2)
    clip = make_video("h264_aac_mp4", duration=6, width=160, height=120)
    with service.client("alice") as alice, service.client("bob") as bob:
        mine = [
            upload(alice, clip, frames_per_second=fps).json()["job"]["id"] for fps in (6, 8, 10)
        ]
        theirs = upload(bob, clip, frames_per_second=10).json()["job"]["id"]
        jobs = [finished(alice, job_id) for job_id in mine]
        other = finished(bob, theirs)
    assert all(j["state"] == "succeeded" for j in [*jobs, other]), service.logs()
    spans = sorted((j["started_at"], j["finished_at"]) for j in jobs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans  # alice never had two jobs running at once
    assert other["started_at"] < spans[-1][0]  # bob's job ran beside hers, not after
