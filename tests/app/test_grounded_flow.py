"""The grounded captioner served for real: API process, worker process, redis-server, a real
encoded video, and a tiny real model (untrained: the checks are about the flow and the shape
of what comes back, not the words). Once with the local store, once with S3 and no folder
shared by the API and the worker."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.app.test_service_flow import finished, upload
from tests.conftest import Service, service_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["local", "s3"])
def grounded_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_grounded_dir: Path,
) -> Any:
    root = tmp_path_factory.mktemp(f"grounded-{request.param}")
    with service_for(request, root, tiny_grounded_dir) as svc:
        yield svc


def test_caption_then_question_with_evidence_from_the_cached_context(
    grounded_service: Service, make_video: Any
) -> None:
    with grounded_service.client() as client:
        response = upload(client, make_video("h264_aac_mp4", duration=4), segment_seconds=2)
        assert response.status_code == 202, response.text
        video_id = response.json()["video"]["id"]
        job = finished(client, response.json()["job"]["id"])
        assert job["state"] == "succeeded", (job, grounded_service.logs())
        result = job["result"]
        assert isinstance(result["caption"], str)
        assert [(s["start"], s["end"]) for s in result["segments"]] == [(0.0, 2.0), (2.0, 4.0)]
        assert "transcript" in result and "tags" in result  # the experts ran
        prefix = f"videos/alice/{video_id}/"
        stored = grounded_service.stored(prefix)
        assert prefix + "context.npz" in stored and prefix + "perception.json" in stored
        assert prefix + "features.safetensors" not in stored
        for key in stored:  # only the stored context can answer now
            if key.startswith(prefix + "source."):
                grounded_service.remove(key)
        response = client.post(
            f"/v1/videos/{video_id}/questions", json={"question": "is anyone speaking?"}
        )
        assert response.status_code == 202, response.text
        answered = finished(client, response.json()["id"])
        assert answered["state"] == "succeeded", (answered, grounded_service.logs())
        got = answered["result"]
        assert got["question"] == "is anyone speaking?" and isinstance(got["answer"], str)
        assert isinstance(got["evidence"], list)
        for item in got["evidence"]:
            assert item["kind"] in ("speech", "text", "visual", "audio")
            assert 0.0 <= item["start"] <= item["end"] <= 4.0 + 1e-6
            assert isinstance(item["snippet"], str)
        assert client.delete(f"/v1/videos/{video_id}").status_code == 204
        assert grounded_service.stored(prefix) == []
    if grounded_service.s3 is not None:  # the worker read and wrote through S3 alone
        assert [p for p in grounded_service.worker_dir(0).rglob("*") if p.is_file()] == []


def test_job_threads_of_one_worker_answer_together(
    tmp_path: Path, tiny_grounded_dir: Path, make_video: Any
) -> None:
    import redis

    from workers.store import job_key

    svc = Service(tmp_path / "threads", tiny_grounded_dir, env={"VIDCAP_WORKER_THREADS": "3"})
    try:
        svc.start(workers=1)
        with svc.client() as client:
            sent = upload(client, make_video("h264_aac_mp4", duration=2))
            video_id = sent.json()["video"]["id"]
            assert finished(client, sent.json()["job"]["id"])["state"] == "succeeded"
            asked = [
                client.post(f"/v1/videos/{video_id}/questions", json={"question": f"what {i}?"})
                for i in range(9)
            ]
            jobs = [finished(client, r.json()["id"]) for r in asked]
        records = redis.Redis.from_url(svc.redis.url, decode_responses=True)
        ran = [json.loads(records.get(job_key(j["id"])))["worker"] for j in jobs]
    finally:
        svc.stop()
    assert svc.workers[0].returncode == 0  # SIGTERM: every job loop left cleanly
    assert all(j["state"] == "succeeded" for j in jobs), [j["error"] for j in jobs]
    assert all(isinstance(j["result"]["answer"], str) for j in jobs)
    # One process (one model in memory), several job threads, jobs running at once.
    assert len({w["pid"] for w in ran}) == 1
    assert len({w["thread"] for w in ran}) >= 2
    spans = sorted((j["started_at"], j["finished_at"]) for j in jobs)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
