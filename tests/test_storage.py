"""The video store, on a local folder and on a real S3 server (SeaweedFS): objects go in and
come back whole, prefixes list and delete, links serve byte ranges, a worker's workspace
fetches what it reads and stores what it writes, and the janitor cleans both alike."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.janitor import sweep
from storage import LocalStorage, ScratchFull, Storage, Workspace, clean_scratch
from workers.store import Store, video_key


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "data")
    server = request.getfixturevalue("s3_server")
    return server.storage(request.getfixturevalue("s3_bucket"))


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_objects_round_trip_list_and_delete_by_prefix(store: Storage, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    store.put_file("videos/alice/vid_1/source.mp4", _file(tmp_path / "in.mp4", data))
    store.put_file("videos/alice/vid_1/features.safetensors", _file(tmp_path / "f", b"f"))
    store.put_file("videos/alice/vid_10/source.mp4", _file(tmp_path / "g", b"g"))
    moved = _file(tmp_path / "spool.part", b"moved")
    store.put_file("videos/bob/vid_2/source.webm", moved, move=True)

    assert not moved.exists()  # move: the spool file is gone once stored
    assert store.fetch("videos/alice/vid_1/source.mp4", tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == data
    assert not store.fetch("videos/alice/vid_1/nothing.bin", tmp_path / "nothing.bin")
    assert not (tmp_path / "nothing.bin").exists()
    found = store.stat("videos/alice/vid_1/source.mp4")
    assert found is not None and found.size == len(data)
    assert abs(found.modified - time.time()) < 60
    assert store.stat("videos/alice/vid_1") is None  # a prefix is not an object
    assert sorted(o.key for o in store.objects("videos/alice/vid_1/")) == [
        "videos/alice/vid_1/features.safetensors",
        "videos/alice/vid_1/source.mp4",
    ]
    assert len(list(store.objects("videos/"))) == 4

    assert store.delete_prefix("videos/alice/vid_1/") == 2
    # vid_10 shares the characters but not the prefix "vid_1/": it stays.
    assert sorted(o.key for o in store.objects("videos/")) == [
        "videos/alice/vid_10/source.mp4",
        "videos/bob/vid_2/source.webm",
    ]
    assert store.delete_prefix("videos/alice/vid_1/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("videos/alice/vid_10")  # without "/" it would take vid_100 too


def test_an_s3_link_serves_byte_ranges_and_a_tampered_one_is_refused(
    s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.storage(s3_bucket)
    data = bytes(range(256)) * 1000
    store.put_file("videos/alice/vid_1/source.mp4", _file(tmp_path / "v.mp4", data))
    link = store.url(
        "videos/alice/vid_1/source.mp4",
        expires_s=600,
        content_type="video/mp4",
        filename="vid_1.mp4",
    )
    assert link is not None
    part = httpx.get(link, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert part.headers["content-type"] == "video/mp4"
    assert 'filename="vid_1.mp4"' in part.headers["content-disposition"]
    tampered = link.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403
    assert LocalStorage(tmp_path).url("a", expires_s=1, content_type="x", filename="y") is None


def test_a_remote_workspace_fetches_into_scratch_stores_back_and_leaves_nothing(
    s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.storage(s3_bucket)
    store.put_file("videos/alice/vid_1/source.mp4", _file(tmp_path / "v", b"video bytes"))
    scratch = tmp_path / "scratch"
    with Workspace(store, "videos/alice/vid_1", scratch) as ws:
        source = ws.get("source.mp4")
        assert source is not None and source.read_bytes() == b"video bytes"
        assert scratch in source.parents  # a local copy, in scratch
        assert ws.get("context.npz") is None
        ws.path("context.npz").write_bytes(b"context")
        assert not ws.exists("context.npz")  # written locally, not stored yet
        ws.put("context.npz")
        assert ws.exists("context.npz")
    assert list(scratch.iterdir()) == []  # the job's folder went with it
    assert store.fetch("videos/alice/vid_1/context.npz", tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == b"context"

    # The scratch bound: a job may not download more than it allows.
    with (
        Workspace(store, "videos/alice/vid_1", scratch, max_bytes=5) as ws,
        pytest.raises(ScratchFull, match="does not fit"),
    ):
        ws.get("source.mp4")
    assert list(scratch.iterdir()) == []


def test_a_local_workspace_is_the_videos_folder_itself(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "data")
    store.put_file("videos/alice/vid_1/source.mp4", _file(tmp_path / "v", b"x"))
    with Workspace(store, "videos/alice/vid_1", tmp_path / "scratch") as ws:
        assert ws.get("source.mp4") == tmp_path / "data/videos/alice/vid_1/source.mp4"
        ws.path("features.safetensors").write_bytes(b"f")
        ws.put("features.safetensors")
    assert (tmp_path / "data/videos/alice/vid_1/features.safetensors").read_bytes() == b"f"
    assert not (tmp_path / "scratch").exists()  # nothing copied


def test_scratch_of_dead_workers_is_removed_and_of_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead = tmp_path / f"{gone.stdout.strip()}-abc"
    alive = tmp_path / f"{os.getpid()}-def"
    for folder in (dead, alive):
        _file(folder / "source.mp4", b"x")
    assert clean_scratch(tmp_path) == [dead]
    assert alive.is_dir() and not dead.exists()


def test_stale_multipart_uploads_are_aborted(
    s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.storage(s3_bucket)
    client = s3_server.client()
    started = client.create_multipart_upload(Bucket=s3_bucket, Key="videos/a/vid_1/source.mp4")
    client.upload_part(Bucket=s3_bucket, Key="videos/a/vid_1/source.mp4", PartNumber=1,
                       UploadId=started["UploadId"], Body=b"x" * 1024)  # fmt: skip
    assert store.abort_stale_uploads(older_than_s=3600) == 0  # begun just now: kept
    time.sleep(1.1)
    # A client's direct upload still wanted (its video has a record) stays however old.
    assert store.abort_stale_uploads(older_than_s=1, keep=lambda key: "vid_1" in key) == 0
    assert store.abort_stale_uploads(older_than_s=1) == 1
    listed = client.list_multipart_uploads(Bucket=s3_bucket)
    assert not listed.get("Uploads")


def test_the_janitor_removes_what_has_no_record_and_keeps_the_rest(
    store: Storage, redis_server: Any, tmp_path: Path
) -> None:
    records = Store(redis.Redis.from_url(redis_server.url, decode_responses=True), 60)
    names = ("vid_kept", "vid_expired", "vid_young", "vid_worked_on")
    for name in names:
        store.put_file(f"videos/alice/{name}/source.mp4", _file(tmp_path / "v", b"x"))
    spool = tmp_path / "api"
    stale_part = _file(spool / "uploads" / ".upload-abc.part", b"x")
    live_part = _file(spool / "uploads" / ".upload-def.part", b"x")
    records.put(video_key("vid_kept"), {"id": "vid_kept"})
    hours_ago = time.time() - 7200
    os.utime(stale_part, (hours_ago, hours_ago))

    # A store's clock cannot be set back: "stored a while ago" is "older than the grace".
    time.sleep(1.2)
    store.put_file("videos/alice/vid_young/source.mp4", _file(tmp_path / "v", b"x"))
    store.put_file("videos/alice/vid_worked_on/features.safetensors", _file(tmp_path / "f", b"f"))
    removed = sweep(store, records, spool, grace_s=1.0)

    # Gone: the videos with no record, even one with a fresh worker object in it. Kept: a
    # video with a record, one stored just now, an upload still arriving.
    assert set(removed) >= {
        "videos/alice/vid_expired/",
        "videos/alice/vid_worked_on/",
        str(stale_part),
    }
    left = sorted(o.key for o in store.objects("videos/"))
    assert left == ["videos/alice/vid_kept/source.mp4", "videos/alice/vid_young/source.mp4"]
    assert live_part.is_file() and not stale_part.exists()
