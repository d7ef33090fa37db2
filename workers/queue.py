"""The queue: creating jobs, handing them to RQ, retrying lost ones, and back-pressure.

Jobs wait per tenant and workers take them round robin (workers/fair.py), so one tenant's
backlog never stalls another tenant's job for longer than one job per worker.

Jobs cross Redis as a dotted path and our job id, with RQ's JSON serializer: the API never
imports torch, and nothing pickled is ever loaded from Redis. Each attempt of a job is its own
RQ job (``{job id}-a{attempt}``), so a worker that was declared lost and then wakes up cannot
overwrite the attempt that replaced it: the record names the attempt it expects.
"""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import redis

from settings import Settings
from workers.fair import FairQueue, fair_queue
from workers.metrics import Metrics
from workers.store import (
    RUNNING_KEY,
    JobState,
    Stale,
    Store,
    alive_key,
    job_key,
    missing_key,
    new_id,
    now,
    questions_key,
)

log = logging.getLogger(__name__)

TASKS = {
    "caption": "workers.tasks.caption_video",
    "question": "workers.tasks.answer_question",
}
# RQ's own copy of a result is not read by anyone: keep it briefly (our records hold results).
RQ_RESULT_TTL_S = 3600


def rq_queue(connection: redis.Redis, settings: Settings) -> FairQueue:
    """The queue jobs go to: RQ's, with jobs waiting per tenant and taken round robin
    (``connection`` must return bytes: RQ needs them)."""
    return fair_queue(
        connection,
        settings.queue_name,
        lease_s=settings.worker_lost_after_s,
        max_running_per_tenant=settings.max_running_per_tenant,
        keep_s=settings.retention_s,
    )


def job_timeout_s(settings: Settings, duration_s: float) -> int:
    """How long one attempt may run: a base plus a budget per second of video."""
    return math.ceil(settings.job_timeout_base_s + settings.job_timeout_per_video_s * duration_s)


def rq_job_id(job_id: str, attempt: int) -> str:
    """The RQ job id of one attempt of a job."""
    return f"{job_id}-a{attempt}"


def attempt_of(rq_id: str) -> tuple[str, int]:
    """Our job id and the attempt number of an RQ job id (:func:`rq_job_id` undone)."""
    job_id, _, attempt = rq_id.rpartition("-a")
    return job_id, int(attempt)


def submit(queue: FairQueue, record: dict[str, Any], settings: Settings) -> None:
    """Puts an attempt of a job (already stored as ``queued``) on its tenant's waiting list;
    a retry goes first, as it has waited its turn already."""
    queue.enqueue_tenant_job(
        record["tenant"],
        at_front=record["attempts"] > 1,
        func=TASKS[record["kind"]],
        args=(record["id"],),
        job_id=rq_job_id(record["id"], record["attempts"]),
        timeout=record["timeout_s"],
        result_ttl=min(RQ_RESULT_TTL_S, settings.retention_s),  # RQ's copy: never past ours
        failure_ttl=settings.retention_s,
        ttl=settings.retention_s,
        description=f"{record['kind']} {record['video_id']}",
    )


def adopt_plain_jobs(store: Store, queue: FairQueue) -> int:
    """Puts jobs an older vidcap left on RQ's one list onto their tenants' lists (at start)."""

    def tenant_of(rq_id: str) -> str | None:
        record = store.job(attempt_of(rq_id)[0])
        return None if record is None else str(record["tenant"])

    moved = queue.adopt(tenant_of)
    if moved:
        log.info("moved %d waiting job(s) from RQ's list to the per-tenant lists", moved)
    return moved


def create_job(
    store: Store,
    queue: FairQueue,
    settings: Settings,
    *,
    kind: str,
    tenant: str,
    video: dict[str, Any],
    question: str | None = None,
) -> dict[str, Any]:
    """Stores a new job record and enqueues its first attempt.

    Returns:
        The job's record.
    """
    record: dict[str, Any] = {
        "id": new_id("job"),
        "kind": kind,
        "tenant": tenant,
        "video_id": video["id"],
        "state": JobState.QUEUED,
        "stage": None,
        "percent": 0,
        "created_at": now(),
        "started_at": None,
        "finished_at": None,
        "timings": {},
        "attempts": 1,
        # A direct upload is probed by its caption job: until then, the longest video taken.
        "timeout_s": job_timeout_s(
            settings, (video["media"] or {}).get("duration_s", settings.media_max_duration_s)
        ),
        "question": question,
        "result": None,
        "error": None,
        "cancel_requested": False,
    }
    with store.redis.pipeline() as pipe:
        store.put(job_key(record["id"]), record, pipe)
        if kind == "question":
            pipe.rpush(questions_key(video["id"]), record["id"])
            pipe.expire(questions_key(video["id"]), settings.retention_s)
        pipe.execute()
    try:
        submit(queue, record, settings)
    except Exception:
        # Without its RQ job the record would wait forever: say so instead.
        fail(store, record["id"], "internal_error", "the job could not be queued; try again")
        raise
    return record


def fail(store: Store, job_id: str, code: str, message: str) -> dict[str, Any] | None:
    """Ends a job that has not finished yet as ``failed`` with ``code`` (None if it had)."""

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["state"] in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED):
            return None
        record.update(
            state=JobState.FAILED,
            finished_at=now(),
            error={"code": code, "message": message},
        )
        return record

    try:
        return store.update(job_key(job_id), change)
    except Stale:
        return None


def reap(store: Store, queue: FairQueue, settings: Settings) -> list[str]:
    """Finds jobs whose worker died (no heartbeat) and retries or fails them.

    Any number of processes may run this at once: a job is claimed by removing it from the
    running set, which only one of them can do.

    Returns:
        Ids of the jobs handled.
    """
    handled: list[str] = []
    beat_s = settings.worker_lost_after_s / 3  # a working worker renews its key this often
    seconds, micros = cast(tuple[int, int], store.redis.time())
    clock = seconds + micros / 1e6
    for job_id in cast(set[str], store.redis.smembers(RUNNING_KEY)):
        if store.redis.exists(alive_key(job_id)):
            store.redis.delete(missing_key(job_id))
            continue
        # Lost only when found missing twice, a heartbeat apart: after a Redis freeze every
        # alive key expires at once, and a worker that is fine renews its key within a beat.
        first = store.redis.set(missing_key(job_id), clock, nx=True, ex=math.ceil(6 * beat_s))
        if first or clock - float(store.redis.get(missing_key(job_id)) or clock) < beat_s:
            continue
        store.redis.delete(missing_key(job_id))
        if not store.redis.srem(RUNNING_KEY, job_id):
            continue  # another reaper claimed it
        record = store.job(job_id)
        if record is None or record["state"] != JobState.RUNNING:
            continue
        handled.append(job_id)
        if record["attempts"] < settings.max_attempts:
            retry(store, queue, settings, job_id, record["attempts"])
        else:
            log.warning("job %s: worker lost on attempt %d, giving up", job_id, record["attempts"])
            ended = fail(
                store,
                job_id,
                "worker_lost",
                f"the worker running this job stopped {record['attempts']} time(s); "
                "the job was not retried again",
            )
            if ended is not None:
                Metrics(store.redis).job_finished(record["kind"], "failed", None, "worker_lost")
    return handled


def retry(store: Store, queue: FairQueue, settings: Settings, job_id: str, attempt: int) -> None:
    """Queues the next attempt of a running job whose attempt ``attempt`` was lost."""

    def change(record: dict[str, Any]) -> dict[str, Any]:
        if record["state"] != JobState.RUNNING or record["attempts"] != attempt:
            raise Stale(f"job {job_id} moved on")
        record.update(state=JobState.QUEUED, stage=None, percent=0, attempts=attempt + 1)
        return record

    try:
        record = store.update(job_key(job_id), change)
    except Stale:
        return
    log.warning(
        "job %s: worker lost on attempt %d, queued attempt %d", job_id, attempt, attempt + 1
    )
    submit(queue, record, settings)
