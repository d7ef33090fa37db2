"""Job limits and control: timeouts, cancelling a running job, the janitor."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from app.janitor import sweep
from tests.app.test_service_flow import finished
from tests.workers.test_faults import long_job, running_worker_pid
from workers.store import Store, video_key

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


def test_janitor_removes_files_whose_records_expired(redis_server: Any, tmp_path: Path) -> None:
    store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True), 60)
    videos = tmp_path / "videos" / "alice"
    kept, expired, young = (videos / name for name in ("vid_kept", "vid_expired", "vid_young"))
    for folder in (kept, expired, young):
        folder.mkdir(parents=True)
        (folder / "source.mp4").write_bytes(b"x")
    (tmp_path / "uploads").mkdir()
    stale_part = tmp_path / "uploads" / ".upload-abc.part"
    stale_part.write_bytes(b"x")
    store.put(video_key("vid_kept"), {"id": "vid_kept"})
    hour_ago = time.time() - 7200
    for path in (kept, expired, stale_part):
        os.utime(path, (hour_ago, hour_ago))

    removed = sweep(tmp_path, store)

    assert set(removed) == {expired, stale_part}
    assert kept.is_dir() and young.is_dir()
    assert not expired.exists() and not stale_part.exists()


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
