"""A worker process: load the pipeline once, then run a non-forking RQ worker loop.

RQ's default worker forks a child per job, which would load the model per job and break CUDA
(CUDA cannot be used in a child forked after it was initialised). :class:`VidcapWorker` runs
jobs in the worker process itself, where the pipeline was loaded once at start.

Beside the loop run two daemon threads: one keeps this worker's presence key alive (the API's
/readyz looks for it), the other is a reaper that retries or fails jobs of workers that died.

With ``VIDCAP_WORKER_THREADS`` above 1 the process runs that many job loops, one in the main
thread and the others in threads of their own, sharing the loaded model. Their model calls go
through one :class:`~workers.batcher.Batcher`, so questions and descriptions of several jobs
run as one forward pass. A job thread's time limit is RQ's timer (an exception raised in the
thread); a call stuck in C or CUDA code cannot be interrupted that way, so a watchdog thread
ends the whole process when a job runs past its limit by ``WATCHDOG_GRACE_S``: its heartbeats
stop and the reaper gives its jobs to other workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from settings import Settings
from storage import Storage, Workspace, clean_scratch, open_storage
from workers.batcher import Batcher
from workers.connect import sync_redis
from workers.fair import FairQueue
from workers.metrics import Metrics
from workers.queue import adopt_plain_jobs, reap, rq_queue
from workers.store import WORKER_PREFIX, Store, reconnecting

if TYPE_CHECKING:
    from models.captioner.answers import Answer
    from models.captioner.grounded_pipeline import GroundedPipeline, VideoContext
    from models.captioner.pipeline import CaptionPipeline, StageTimer
    from models.perception.runner import Perceiver

log = logging.getLogger(__name__)

STOP_CHECK_S = 2  # how often an idle job thread looks whether the process is stopping
WATCHDOG_GRACE_S = 60.0  # past a job's limit before the watchdog ends the process
EXIT_STUCK = 75  # the process's exit status when the watchdog ended it
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


def generate(
    items: Sequence[tuple[VideoContext, str]], timer: StageTimer | None = None
) -> list[Answer]:
    """The grounded captioner's answers and descriptions for (context, prompt) items, through
    this process's batcher: the calls of every job thread that arrive together run as one."""
    batcher = _state.get("generator")
    if batcher is None:  # not started by run_worker (a test calling the job functions)
        from models.captioner.grounded_pipeline import GroundedPipeline

        pipe = pipeline()
        assert isinstance(pipe, GroundedPipeline)
        return pipe.generate(items, timer=timer)
    if timer is None:
        return list(batcher.submit_many(list(items)))
    with timer.stage("generate"):
        return list(batcher.submit_many(list(items)))


class Watchdog:
    """Ends the process when a job runs past its limit by more than ``grace_s`` (a call stuck
    where RQ's timeout cannot reach it). Jobs register when they start and leave when done."""

    def __init__(self, grace_s: float = WATCHDOG_GRACE_S) -> None:
        self.grace_s = grace_s
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()

    def started(self, job_id: str, timeout_s: float) -> None:
        with self._lock:
            self._deadlines[job_id] = time.monotonic() + timeout_s + self.grace_s

    def ended(self, job_id: str) -> None:
        with self._lock:
            self._deadlines.pop(job_id, None)

    def overdue(self) -> list[str]:
        """Jobs past their limit and the grace."""
        now = time.monotonic()
        with self._lock:
            return [j for j, deadline in self._deadlines.items() if now > deadline]

    def watch(self, stop: threading.Event, every_s: float = 5.0) -> None:
        """Checks every ``every_s`` until ``stop``; ends the process on an overdue job."""
        while not stop.wait(every_s):
            stuck = self.overdue()
            if stuck:
                log.critical(
                    "jobs %s ran past their time limit by %.0f s and could not be interrupted;"
                    " ending the worker process so that they are retried elsewhere",
                    ", ".join(stuck),
                    self.grace_s,
                )
                logging.shutdown()
                os._exit(EXIT_STUCK)


def watchdog() -> Watchdog:
    """This process's watchdog (one is made when absent: job functions run in tests)."""
    return cast(Watchdog, _state.setdefault("watchdog", Watchdog()))


def identity() -> dict[str, Any]:
    """This worker's name and pid (recorded in the jobs it runs, for operators and tests)."""
    return {
        "name": _state.get("name"),
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
    }


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

    helpers: tuple[ThreadWorker, ...] = ()  # the process's other job loops (worker_threads)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # SIGTERM: every job loop of the process finishes its job and takes no other.
        for helper in self.helpers:
            helper.stop()
        super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        # RQ ignores a second signal within 1 s of the first (its worker pool sends one of its
        # own); vidcap runs no pool, so a second SIGTERM or Ctrl-C always means now.
        if self._shutdown_requested_date is not None:
            self._shutdown_requested_date -= timedelta(seconds=1)
        super().request_force_stop(signum, frame)


class ThreadWorker(VidcapWorker):
    """A job loop in a thread of a worker process (``VIDCAP_WORKER_THREADS`` > 1).

    Signals reach the main thread only: the main loop passes a stop on (:meth:`stop`). A job's
    time limit is RQ's timer, which raises the timeout in this thread.
    """

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # the main thread's loop handles SIGTERM and Ctrl-C for the process

    def stop(self) -> None:
        """Finish the current job (if any), then leave the loop."""
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        # Waits for a job in turns of STOP_CHECK_S, so a stop reaches an idle loop soon (RQ's
        # own wait, up to its dequeue timeout, looks at nothing but the queue).
        if timeout is None:  # burst: no waiting at all
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            turn = min(timeout, STOP_CHECK_S)
            found = super().dequeue_job_and_maintain_ttl(turn, max_idle_time=turn)
            if found is not None:
                return found
        return None


def _raise_in(thread: threading.Thread, error: type[BaseException]) -> None:
    """Raises ``error`` in ``thread`` at its next Python instruction."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(error)
        )


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
    if isinstance(pipe, GroundedPipeline):
        # The model calls of every job thread meet here; with one thread, batches of one.
        _state["generator"] = Batcher(
            lambda items: pipe.generate(items),
            max_batch=pipe.batch_size,
            wait_s=config.batch_wait_ms / 1000,
            name="generate",
        )
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
    watching = threading.Thread(target=watchdog().watch, args=(stop,), name="watchdog", daemon=True)
    watching.start()
    threads = [
        _every(PRESENCE_EVERY_S, stop, announce, "presence"),
        _every(REAP_EVERY_S, stop, lambda: reap(store(), queue(), settings()), "reaper"),
        watching,
    ]
    count = config.worker_threads or (4 if str(pipe.device).startswith("cuda") else 1)
    options: dict[str, Any] = {
        "connection": connection,
        "serializer": JSONSerializer,
        "queue_class": FairQueue,
        "worker_ttl": 30,
        "maintenance_interval": 10,
    }
    helpers = [ThreadWorker([queue()], name=f"{name}.t{i}", **options) for i in range(1, count)]
    loops = [
        threading.Thread(
            target=h.work,
            kwargs={"burst": burst, "logging_level": "INFO", "with_scheduler": False},
            name=f"jobs-{i}",
            daemon=True,
        )
        for i, h in enumerate(helpers, start=1)
    ]
    for loop in loops:
        loop.start()
    if helpers:
        log.info("%d job threads share the model", count)
    worker = VidcapWorker([queue()], name=name, **options)
    worker.helpers = tuple(helpers)
    try:
        worked = bool(worker.work(burst=burst, logging_level="INFO", with_scheduler=False))
        for helper in helpers:  # SIGTERM (or the end of a burst): they finish their jobs too
            helper.stop()
        for loop in loops:
            loop.join()
        return worked
    except BaseException:  # a second SIGTERM: every thread puts its job back at once
        for loop in loops:
            _raise_in(loop, SystemExit)
        for loop in loops:
            loop.join(timeout=10)
        raise
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        generator = _state.pop("generator", None)
        if generator is not None:
            generator.close()
            done = generator.stats
            log.info(
                "generate: %d calls in %d batches (mean %.2f, largest %d)",
                done.calls, done.batches, done.mean, done.largest,
            )  # fmt: skip
        with contextlib.suppress(redis.RedisError):
            store().redis.delete(key)
