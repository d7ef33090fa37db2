"""The records the API reads: videos and jobs, as JSON values in Redis.

This store, not RQ's job hashes, is the source of truth. RQ only carries a job id from the API
to a worker; the worker writes progress and results here. Every record expires after the
retention period, and every change to a job is published on its channel, so long-polls and
server-sent events wake up at once.

Keys (``vidcap:`` prefix):

=====================================  ==========================================================
``video:{id}``                         a video's record (JSON)
``job:{id}``                           a job's record (JSON)
``job:{id}:alive``                     present while a worker runs the job (heartbeat, short TTL)
``job:{id}:cancel``                    set by a cancel request; the job stops at its next stage
``video:{id}:questions``               the video's question job ids, oldest first
``tenant:{t}:videos``                  the tenant's video ids, scored by creation time
``tenant:{t}:sha:{digest}``            same bytes + same options -> the video already stored
``tenant:{t}:idem:{key}``              Idempotency-Key -> video id
``running``                            ids of jobs a worker has started (the reaper's worklist)
``worker:{name}``                      a live worker: its model and device (TTL; /readyz)
``events:{job id}``                    pub/sub channel: the job's record after each change
=====================================  ==========================================================
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any, cast

import redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

PREFIX = "vidcap:"
IDEMPOTENCY_TTL_S = 24 * 3600


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


class Stage(StrEnum):
    """What a running job is doing."""

    PROBING = "probing"
    TRANSCRIBING = "transcribing"
    READING_TEXT = "reading_text"
    TAGGING = "tagging"
    DECODING = "decoding"
    FEATURES = "features"
    FUSION = "fusion"
    GENERATING = "generating"


class VideoStatus(StrEnum):
    """A video's status, which follows its caption job."""

    UPLOADING = "uploading"  # a direct upload the client has not completed yet
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    CANCELED = "canceled"


VIDEO_STATUS = {
    JobState.QUEUED: VideoStatus.QUEUED,
    JobState.RUNNING: VideoStatus.PROCESSING,
    JobState.SUCCEEDED: VideoStatus.READY,
    JobState.FAILED: VideoStatus.FAILED,
    JobState.CANCELED: VideoStatus.CANCELED,
}


def new_id(kind: str) -> str:
    """A fresh, unguessable id: ``vid_...`` or ``job_...``."""
    return f"{kind}_{secrets.token_hex(12)}"


def now() -> float:
    """Wall-clock time in seconds (records store Unix times)."""
    return time.time()


def video_key(video_id: str) -> str:
    """Key of a video's record."""
    return f"{PREFIX}video:{video_id}"


def job_key(job_id: str) -> str:
    """Key of a job's record."""
    return f"{PREFIX}job:{job_id}"


def alive_key(job_id: str) -> str:
    """Key whose presence says a worker is running the job."""
    return f"{PREFIX}job:{job_id}:alive"


def missing_key(job_id: str) -> str:
    """Key holding when a reaper first found the job's alive key gone (Redis server time)."""
    return f"{PREFIX}job:{job_id}:missing"


def cancel_key(job_id: str) -> str:
    """Key set when a client asks to cancel the job."""
    return f"{PREFIX}job:{job_id}:cancel"


def questions_key(video_id: str) -> str:
    """List of a video's question jobs."""
    return f"{PREFIX}video:{video_id}:questions"


def videos_key(tenant: str) -> str:
    """Sorted set of a tenant's videos by creation time."""
    return f"{PREFIX}tenant:{tenant}:videos"


def sha_key(tenant: str, digest: str, options_key: str) -> str:
    """Maps a tenant's bytes + options to the video that holds them."""
    return f"{PREFIX}tenant:{tenant}:sha:{digest}:{options_key}"


def idempotency_key(tenant: str, key: str) -> str:
    """Maps a tenant's Idempotency-Key header to the video it created."""
    return f"{PREFIX}tenant:{tenant}:idem:{key}"


def question_idempotency_key(tenant: str, key: str) -> str:
    """Maps a tenant's Idempotency-Key header on a question to its job and fingerprint."""
    return f"{PREFIX}tenant:{tenant}:idem-question:{key}"


def events_channel(job_id: str) -> str:
    """Pub/sub channel carrying a job's record after each change."""
    return f"{PREFIX}events:{job_id}"


RUNNING_KEY = f"{PREFIX}running"
WORKER_PREFIX = f"{PREFIX}worker:"


def reconnecting(retry_class: type[Retry] | type[AsyncRetry] = Retry) -> dict[str, Any]:
    """Client options that ride out a Redis restart (about 2 s of retries, then an error).

    redis-py's default does not retry a command whose pooled connection the restart closed.
    """
    return {
        "retry": retry_class(ExponentialBackoff(cap=0.5, base=0.05), 8),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
    }


def answering(
    retry_class: type[Retry] | type[AsyncRetry] = Retry, timeout_s: float = 1.5
) -> dict[str, Any]:
    """Client options for a server that must answer its own clients quickly (the API).

    Like :func:`reconnecting` for a restart (refused or reset connections are retried for
    about 2 s), but a Redis that stalls (paused, stopped, swapping) fails a command after
    ``timeout_s`` without retrying it, so a request gets 503 instead of hanging with it.
    """
    return {
        "retry": retry_class(
            ExponentialBackoff(cap=0.5, base=0.05), 8, supported_errors=(RedisConnectionError,)
        ),
        "retry_on_error": [RedisConnectionError],
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 30,
    }


class Stale(Exception):
    """The record changed hands: another attempt owns the job, or the record is gone."""


class Store:
    """Reads and writes the records (synchronous; workers and the API's threads use it).

    Args:
        client: A Redis client with ``decode_responses=True``.
        retention_s: Time to live of every record.
    """

    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> dict[str, Any] | None:
        """A record by key, or None."""
        raw = self.redis.get(key)
        return None if raw is None else json.loads(raw)

    def video(self, video_id: str) -> dict[str, Any] | None:
        """A video's record, or None."""
        return self.get(video_key(video_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A job's record, or None."""
        return self.get(job_key(job_id))

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a client asked to cancel the job."""
        return bool(self.redis.exists(cancel_key(job_id)))

    # ------------------------------------------------------------------ writes

    def put(self, key: str, record: dict[str, Any], pipe: Any = None) -> None:
        """Writes a record with the retention TTL (in ``pipe`` when given)."""
        target = pipe if pipe is not None else self.redis
        target.set(key, json.dumps(record, separators=(",", ":")), ex=self.retention_s)
        if key.startswith(f"{PREFIX}job:"):
            target.publish(events_channel(record["id"]), json.dumps(record))

    def update(
        self,
        key: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        also: Callable[[Any, dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Changes a record atomically: read, ``change(record)``, write, retried on conflict.

        Args:
            key: The record's key.
            change: Gets the current record; returns the new one, or None to leave it as is.
                It may raise :class:`Stale` to refuse (the record is left unchanged).
            also: Called with the transaction's pipeline and the new record, to queue more
                commands in the same transaction.

        Returns:
            The record as written (or as found, when ``change`` returned None).

        Raises:
            Stale: The record does not exist, or ``change`` refused.
        """
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise Stale(f"{key} does not exist")
                    current = json.loads(raw)
                    updated = change(dict(current))
                    if updated is None:
                        pipe.unwatch()
                        return current
                    # Readers of the events channel drop messages older than what they have.
                    updated["version"] = current.get("version", 0) + 1
                    pipe.multi()
                    self.put(key, updated, pipe)
                    if also is not None:
                        also(pipe, updated)
                    pipe.execute()
                    return updated
                except redis.WatchError:
                    continue

    def scan(self, match: str) -> Iterator[str]:
        """Keys matching a pattern (SCAN, never KEYS)."""
        yield from self.redis.scan_iter(match=match, count=500)

    # ------------------------------------------------------------------ listing

    def list_videos(
        self, tenant: str, limit: int, cursor: tuple[float, str] | None
    ) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        """A page of the tenant's videos, newest first, and the cursor of the next page.

        The cursor is the (score, id) of the last video returned: equal scores are ordered by
        id, so a page boundary between two videos created in the same microsecond holds.
        Expired videos met on the way are dropped from the index.
        """
        index = videos_key(tenant)
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            top = "+inf" if cursor is None else repr(cursor[0])
            rows = cast(
                list[tuple[str, float]],
                self.redis.zrevrangebyscore(
                    index, top, "-inf", start=0, num=limit + 50, withscores=True
                ),
            )
            if cursor is not None:
                # In reverse order, equal scores come by descending id: skip those already shown.
                last = cursor
                rows = [(m, sc) for m, sc in rows if sc < last[0] or m < last[1]]
            if not rows:
                return found, None
            records = cast(list[str | None], self.redis.mget([video_key(m) for m, _ in rows]))
            for (member, score), raw in zip(rows, records, strict=True):
                cursor = (score, member)
                if raw is None:
                    self.redis.zrem(index, member)
                    continue
                found.append(json.loads(raw))
                if len(found) == limit:
                    break
        assert cursor is not None
        return found, cursor if self._has_after(index, cursor) else None

    def _has_after(self, index: str, cursor: tuple[float, str]) -> bool:
        """Whether the index holds a video after ``cursor`` in newest-first order."""
        if self.redis.zcount(index, "-inf", f"({cursor[0]!r}"):
            return True
        ties = cast(list[str], self.redis.zrangebyscore(index, repr(cursor[0]), repr(cursor[0])))
        return any(m < cursor[1] for m in ties)
