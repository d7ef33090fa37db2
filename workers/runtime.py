"""A worker process: load the pipeline once, then run a non-forking RQ worker loop.

RQ's default worker forks a child per job, which would load the model per job and break CUDA
(CUDA cannot be used in a child forked after it was initialised). :class:`VidcapWorker` runs
jobs in the worker process itself, where the pipeline was loaded once at start.

Beside the loop run two daemon threads: one keeps this worker's presence key alive (the API's
/readyz looks for it), the other is a reaper that retries or fails jobs of workers that died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from settings import Settings
from storage import Storage, Workspace, clean_scratch, open_storage
from workers.connect import sync_redis
from workers.fair import FairQueue
from workers.metrics import Metrics
from workers.queue import adopt_plain_jobs, reap, rq_queue
from workers.store import WORKER_PREFIX, Store, reconnecting

if TYPE_CHECKING:
    from models.captioner.grounded_pipeline import GroundedPipeline
    from models.captioner.pipeline import CaptionPipeline
    from models.perception.runner import Perceiver

log = logging.getLogger(__name__)

PRESENCE_TTL_S = 15
PRESENCE_EVERY_S = 5
REAP_EVERY_S = 5

# What the job functions use, set once per process by start().
_state: dict[str, Any] = {}


def settings() -> Settings:
    """This process's settings."""
    return _state["settings"]


def store() -> Store:
    """The record store."""
    return _state["store"]


def queue() -> FairQueue:
    """The queue (RQ's, fair across tenants)."""
    return _state["queue"]


def storage() -> Storage:
    """Where the videos and what the workers make of them are stored."""
    return _state["storage"]


def workspace(video: dict[str, Any]) -> Workspace:
    """A job's local view of ``video``'s stored objects (close it when the job ends)."""
    config = settings()
    return Workspace(storage(), video["dir"], config.scratch, config.scratch_max_bytes)


def metrics() -> Metrics:
    """The shared metrics."""
    return _state["metrics"]


def pipeline() -> CaptionPipeline | GroundedPipeline:
    """The loaded model pipeline."""
    return _state["pipeline"]


def perceiver() -> Perceiver:
    """The loaded perception experts (speech, on-screen text, tags)."""
    return _state["perceiver"]


def identity() -> dict[str, Any]:
    """This worker's name and pid (recorded in the jobs it runs, for operators and tests)."""
    return {"name": _state.get("name"), "pid": os.getpid()}


def redis_clients(config: Settings) -> tuple[redis.Redis, redis.Redis]:
    """Two clients of the service's Redis: bytes (RQ needs them) and text (our records)."""
    options: dict[str, Any] = {**reconnecting(), "socket_keepalive": True}
    return (
        sync_redis(config, decode=False, **options),
        sync_redis(config, decode=True, **options),
    )


def start(
    config: Settings, pipe: CaptionPipeline | GroundedPipeline, experts: Perceiver
) -> redis.Redis:
    """Sets up this process's state for the job functions; returns RQ's (bytes) client."""
    if not config.redis_configured:
        raise ValueError("REDIS_URL is not set: a worker needs the Redis the API uses")
    raw, text = redis_clients(config)
    _state.update(
        settings=config,
        store=Store(text, config.retention_s),
        queue=rq_queue(raw, config),
        metrics=Metrics(text),
        storage=open_storage(config),
        pipeline=pipe,
        perceiver=experts,
    )
    for folder in clean_scratch(config.scratch):
        log.info("removed scratch folder %s (its worker is gone)", folder)
    return raw


class VidcapWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process) with the JSON serializer."""

    def subscribe(self) -> None:
        # RQ's command listener (a thread) looks at its stop flag once a minute when idle, and
        # redis-py waits for it at shutdown: a stopping worker sat up to 60 s after its last
        # job. Listening in one-second turns, it exits within a second.
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        # RQ ignores a second signal within 1 s of the first (its worker pool sends one of its
        # own); vidcap runs no pool, so a second SIGTERM or Ctrl-C always means now.
        if self._shutdown_requested_date is not None:
            self._shutdown_requested_date -= timedelta(seconds=1)
        super().request_force_stop(signum, frame)


def _every(seconds: float, stop: threading.Event, action: Any, what: str) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(seconds):
            try:
                action()
            except Exception as e:  # e.g. Redis restarting: try again next time
                log.warning("%s failed: %s", what, e)

    thread = threading.Thread(target=loop, name=what, daemon=True)
    thread.start()
    return thread


def run_worker(config: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Loads the pipeline once, then works the queue until stopped (or empty, with ``burst``).

    SIGTERM or Ctrl-C lets the current job finish, then exits; a second one puts the job
    back on the queue for another worker and exits at once.

    Returns:
        Whether any job was run.
    """
    from transformers.utils import logging as hf_logging

    from models.captioner.grounded_pipeline import GroundedPipeline, is_grounded
    from models.captioner.pipeline import CaptionPipeline
    from models.perception.runner import Perceiver

    hf_logging.disable_progress_bar()  # one log line says the model loaded; no bar in the logs
    began = time.perf_counter()
    pipe: CaptionPipeline | GroundedPipeline
    if is_grounded(config.model):
        pipe = GroundedPipeline.from_pretrained(config.model, device=config.device)
        pipe.model.text_encoder  # noqa: B018  # load (and check) the text encoder now
    else:
        pipe = CaptionPipeline.from_pretrained(
            config.model,
            device=config.device,
            limits=config.media_limits(),
            backend=config.media_backend,
        )
    log.info(
        "model %s loaded on %s in %.1fs", config.model, pipe.device, time.perf_counter() - began
    )
    began = time.perf_counter()
    # Every weight file is checked by its sha256 here: a worker with a wrong file stops now,
    # with an error naming it, instead of failing its first job.
    experts = Perceiver(
        whisper_model=config.whisper_model, device=config.device, limits=config.media_limits()
    )
    log.info(
        "perception experts (whisper %s, text, tags) loaded in %.1fs",
        config.whisper_model,
        time.perf_counter() - began,
    )
    connection = start(config, pipe, experts)
    name = name or f"{socket.gethostname()}.{os.getpid()}"
    _state["name"] = name
    presence = json.dumps(
        {"name": name, "model": str(config.model), "device": str(pipe.device), "since": time.time()}
    )
    key = WORKER_PREFIX + name
    stop = threading.Event()

    def announce() -> None:
        store().redis.set(key, presence, ex=PRESENCE_TTL_S)

    announce()
    adopt_plain_jobs(store(), queue())
    threads = [
        _every(PRESENCE_EVERY_S, stop, announce, "presence"),
        _every(REAP_EVERY_S, stop, lambda: reap(store(), queue(), settings()), "reaper"),
    ]
    worker = VidcapWorker(
        [queue()],
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        queue_class=FairQueue,
        worker_ttl=30,
        maintenance_interval=10,
    )
    try:
        return bool(worker.work(burst=burst, logging_level="INFO", with_scheduler=False))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        with contextlib.suppress(redis.RedisError):
            store().redis.delete(key)
