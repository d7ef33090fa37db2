"""An S3 store that does not answer: the API says so (503 ``storage_unavailable``) on
/readyz and on an upload, and keeps nothing of the upload (no record, no spool file)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.app.test_service_flow import upload
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
