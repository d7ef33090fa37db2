"""Shared pytest fixtures."""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from models.media import synth
from models.media.synth import VideoSpec
from workers.redis_server import RedisServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# --- Redis: a real, private redis-server per test ------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server with its data in the test's tmp_path; stopped afterwards."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of ``redis_server`` returning bytes (decode_responses=False); closed afterwards."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


# --- Videos: real files encoded with PyAV by the test run ----------------------------------

BROKEN_KINDS = (
    "truncated",  # an mp4 cut in half: its index (written last) is lost
    "truncated_index_intact",  # a faststart mp4 cut in half: the index promises missing frames
    "empty",
    "random_bytes",
    "text",
    "audio_only",
)


class VideoFactory:
    """Writes test videos on demand, once per session per distinct request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path] = {}

    def __call__(self, kind: str = "h264_aac_mp4", **changes: object) -> Path:
        """A file of ``kind`` (a preset in models.media.synth.PRESETS, or a broken kind).

        Keyword arguments change fields of the preset's VideoSpec (duration=, rotation=, ...).
        Do not modify the returned file: it is shared by the whole session.
        """
        key = f"{kind}-" + "-".join(f"{k}={v}" for k, v in sorted(changes.items()))
        if key not in self.made:
            self.made[key] = self._write(kind, f"v{len(self.made)}", changes)
        return self.made[key]

    def _write(self, kind: str, stem: str, changes: dict[str, object]) -> Path:
        base = self.root / stem
        if kind in synth.PRESETS:
            suffix, spec = synth.with_spec(kind, **changes)
            for codec in (spec.video_codec, spec.audio_codec):
                if codec is not None and not synth.encoder_available(codec):
                    pytest.skip(f"this PyAV build has no {codec} encoder")
            return synth.write_video(base.with_suffix(suffix), spec)
        if kind in ("truncated", "truncated_index_intact"):
            # faststart puts the index first, so half a file still promises every frame
            spec = VideoSpec(duration=3, faststart=kind == "truncated_index_intact")
            whole = synth.write_video(base.with_name(stem + "-whole.mp4"), spec)
            return synth.truncate(whole, base.with_suffix(".mp4"))
        if kind == "empty":
            path = base.with_suffix(".mp4")
            path.write_bytes(b"")
            return path
        if kind == "random_bytes":
            path = base.with_suffix(".mp4")
            path.write_bytes(np.random.default_rng(0).bytes(64 * 1024))
            return path
        if kind == "text":
            path = base.with_suffix(".mp4")
            path.write_text("This is a note, not a video.\n" * 50)
            return path
        if kind == "audio_only":
            return synth.write_audio_only(base.with_suffix(".m4a"))
        raise ValueError(f"unknown video kind {kind!r}")


@pytest.fixture(scope="session")
def make_video(tmp_path_factory: pytest.TempPathFactory) -> VideoFactory:
    """Factory of real test videos: ``make_video("vp9_opus_webm", duration=3)``."""
    return VideoFactory(tmp_path_factory.mktemp("videos"))


def decode_children() -> list[psutil.Process]:
    """Decode processes still alive: children of the media forkserver (there must be none)."""
    me = os.getpid()
    return [p for p in psutil.Process(me).children(recursive=True) if p.ppid() != me]
