"""``/v1/jobs``: poll a job (or long-poll, or stream it as server-sent events), cancel it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from app.deps import ServicesDep, TenantDep
from app.errors import ApiError, ErrorCode, error_responses
from app.schemas import JobPublic
from app.services import Services
from workers.store import (
    TERMINAL,
    JobState,
    Stale,
    cancel_key,
    events_channel,
    job_key,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 60.0
KEEPALIVE_S = 15.0
RECHECK_S = 5.0  # re-read the record now and then, in case a message was missed


def _owned(raw: str | None, tenant: str) -> dict[str, Any]:
    record = None if raw is None else json.loads(raw)
    if record is None or record.get("tenant") != tenant:
        raise ApiError(
            ErrorCode.JOB_NOT_FOUND, "no job with this id (it may have expired or been deleted)"
        )
    return cast(dict[str, Any], record)


async def load_job(services: Services, tenant: str, job_id: str) -> dict[str, Any]:
    """The tenant's job record, or 404."""
    return _owned(cast(str | None, await services.redis.get(job_key(job_id))), tenant)


def _json(record: dict[str, Any], status: int = 200) -> Response:
    return Response(
        JobPublic.of(record).model_dump_json(), status_code=status, media_type="application/json"
    )


async def changes(
    services: Services, tenant: str, job_id: str, timeout: float | None
) -> AsyncIterator[dict[str, Any] | None]:
    """The job's record now, then after each change, until it ends (or ``timeout`` passes).

    Yields None every KEEPALIVE_S without a change (for SSE keep-alives).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub = services.redis.pubsub()
    try:
        # Subscribe before reading, so a change between the two is not missed.
        await pubsub.subscribe(events_channel(job_id))
        record = await load_job(services, tenant, job_id)
        yield record
        quiet = 0.0
        while record["state"] not in TERMINAL:
            left = RECHECK_S if deadline is None else min(RECHECK_S, deadline - time.monotonic())
            if left <= 0:
                return
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is None:
                fresh = await load_job(services, tenant, job_id)
                quiet += left
                if fresh != record:
                    record, quiet = fresh, 0.0
                    yield record
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield None
                continue
            record, quiet = json.loads(message["data"]), 0.0
            yield record
    finally:
        await pubsub.aclose()


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    responses=error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.JOB_NOT_FOUND),
)
async def get_job(
    job_id: str,
    services: ServicesDep,
    tenant: TenantDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Long-poll: wait up to this many seconds "
            "for the job to end before answering.",
        ),
    ] = 0,
) -> Response:
    """A job's state, stage, percent, timings, and its result or error."""
    if wait <= 0:
        return _json(await load_job(services, tenant, job_id))
    record: dict[str, Any] | None = None
    async for update in changes(services, tenant, job_id, wait):
        record = update or record
    assert record is not None
    return _json(record)


@router.get(
    "/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`event: job` per change."},
        **error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.JOB_NOT_FOUND),
    },
)
async def job_events(job_id: str, services: ServicesDep, tenant: TenantDep) -> StreamingResponse:
    """The job as server-sent events: one `job` event now and after each change, until it ends."""
    await load_job(services, tenant, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        async for record in changes(services, tenant, job_id, None):
            if record is None:
                yield ": keep-alive\n\n"
            else:
                data = JobPublic.of(record).model_dump_json()
                yield f"event: job\nid: {record['state']}-{record['percent']}\ndata: {data}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _cancel(services: Services, record: dict[str, Any]) -> dict[str, Any]:
    store = services.store

    def change(current: dict[str, Any]) -> dict[str, Any]:
        if current["state"] in TERMINAL:
            raise Stale(current["state"])
        if current["state"] == JobState.QUEUED:
            current.update(
                state=JobState.CANCELED,
                finished_at=time.time(),
                error={"code": "canceled", "message": "the job was canceled"},
            )
        current["cancel_requested"] = True
        return current

    def flag(pipe: Any, current: dict[str, Any]) -> None:
        if current["state"] == JobState.RUNNING:  # the job checks this between stages
            pipe.set(cancel_key(current["id"]), 1, ex=current["timeout_s"] + 60)

    try:
        updated = store.update(job_key(record["id"]), change, also=flag)
    except Stale as e:
        raise ApiError(ErrorCode.JOB_FINISHED, f"the job already ended ({e})") from None
    if updated["state"] == JobState.CANCELED:
        from workers.queue import rq_job_id

        services.queue.remove(rq_job_id(updated["id"], updated["attempts"]))
        services.metrics.job_finished(updated["kind"], JobState.CANCELED, None, "canceled")
    return updated


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED, ErrorCode.JOB_NOT_FOUND, ErrorCode.JOB_FINISHED
    ),
)
async def cancel_job(job_id: str, services: ServicesDep, tenant: TenantDep) -> Response:
    """Cancel a job: a queued job ends at once; a running one stops at its next stage."""
    record = await load_job(services, tenant, job_id)
    return _json(await asyncio.to_thread(_cancel, services, record), status=202)
