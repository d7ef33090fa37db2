"""An S3 store that does not answer: the API says so (503 ``storage_unavailable``) on
/readyz and on an upload, and keeps nothing of the upload (no record, no spool file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.test_service_flow import finished, upload
from tests.conftest import S3Server, _free_port

pytestmark = pytest.mark.slow


def test_an_unreachable_store_is_503_and_the_upload_leaves_nothing(
    make_service: Any, make_video: Any
) -> None:
    nobody = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    env = {
        "VIDCAP_STORAGE": "s3",
        "VIDCAP_S3_ENDPOINT_URL": nobody,
        "VIDCAP_S3_BUCKET": "videos",
        "VIDCAP_S3_ACCESS_KEY_ID": S3Server.ACCESS_KEY,
        "VIDCAP_S3_SECRET_ACCESS_KEY": S3Server.SECRET_KEY,
        "VIDCAP_S3_ADDRESSING_STYLE": "path",
    }
    service = make_service(workers=0, env=env)
    with service.client() as client:
        ready = client.get("/readyz")
        sent = upload(client, make_video("h264_aac_mp4", duration=1))
        listed = client.get("/v1/videos").json()["videos"]
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "storage_unavailable"
    assert nobody in ready.json()["error"]["message"]  # a caller with a key sees where
    assert sent.status_code == 503, sent.text
    assert sent.json()["error"]["code"] == "storage_unavailable"
    assert sent.headers["retry-after"] == "5"
    assert listed == []
    assert list((service.data_dir / "uploads").iterdir()) == []


def test_a_job_whose_store_goes_away_fails_cleanly_after_its_attempts(
    make_service: Any, make_video: Any, tmp_path: Path
) -> None:
    s3 = S3Server(tmp_path / "s3").start()  # its own: this test stops it
    try:
        service = make_service(workers=0, s3=s3)
        with service.client() as client:
            sent = upload(client, make_video("h264_aac_mp4", duration=1))
            assert sent.status_code == 202, sent.text
            s3.stop()  # stored; now the store is gone before any worker reads it
            service.start_worker()
            job = finished(client, sent.json()["job"]["id"], timeout=180)
            health = client.get("/readyz")
        assert job["state"] == "failed", job
        assert job["error"]["code"] == "storage_unavailable"
        assert job["attempts"] == 2  # retried once (VIDCAP_MAX_ATTEMPTS), then failed
        assert health.json()["error"]["code"] == "storage_unavailable"
        assert service.workers[0].poll() is None  # the worker lives on
        assert [p for p in service.worker_dir(0).rglob("*") if p.is_file()] == []
    finally:
        s3.stop()
