"""``/v1/jobs``: poll a job (or long-poll, or stream it as server-sent events), cancel it."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, NamedTuple, cast

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.bodies import send_error
from app.deps import ServicesDep, TenantDep, tenant_of
from app.errors import ApiError, ErrorCode, error_responses, redis_unavailable
from app.schemas import JobPublic
from app.services import Services
from workers.queue import rq_job_id
from workers.store import (
    TERMINAL,
    JobState,
    Stale,
    cancel_key,
    job_key,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

POLL_PATH = re.compile(r"/v1/jobs/([A-Za-z0-9_]{1,64})")
MAX_WAIT_S = 60.0
KEEPALIVE_S = 15.0
RECHECK_S = 5.0  # re-read the record now and then, in case a message was missed


class _Rendered(NamedTuple):
    record: dict[str, Any]
    body: bytes


@functools.lru_cache(maxsize=4096)
def _render(raw: str) -> _Rendered:
    """A stored record and its public JSON, cached: a job is polled far more than it changes."""
    record = json.loads(raw)
    return _Rendered(record, JobPublic.of(record).model_dump_json().encode())


def _owned(raw: str | None, tenant: str) -> _Rendered:
    rendered = None if raw is None else _render(raw)
    if rendered is None or rendered.record.get("tenant") != tenant:
        raise ApiError(
            ErrorCode.JOB_NOT_FOUND, "no job with this id (it may have expired or been deleted)"
        )
    return rendered


async def load_job(services: Services, tenant: str, job_id: str) -> dict[str, Any]:
    """The tenant's job record (shared: do not modify it), or 404."""
    raw = cast(str | None, await services.redis.get(job_key(job_id)))
    return _owned(raw, tenant).record


class PollFastPath:
    """Answers successful status polls (``GET /v1/jobs/{id}``) before FastAPI's routing.

    Polls are most of the API's traffic. Here a poll costs one Redis GET and a cached body;
    through the router it also pays for routing, dependency injection and the exception
    middleware, which made it several times slower than a bare endpoint. Anything else (other
    paths, ``?wait=``, a bad key, an unknown or foreign id, Redis trouble) goes on to the
    route below, which answers it, errors included, the usual way.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = POLL_PATH.fullmatch(scope["path"])
            if match is not None:
                try:
                    body = await self._body(scope, match[1])
                except RedisError:  # answered here: the route would wait for Redis again
                    await send_error(scope, send, redis_unavailable())
                    return
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _body(scope: Scope, job_id: str) -> bytes | None:
        state = scope["app"].state
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode(
            "latin-1"
        )
        try:
            tenant = tenant_of(authorization, state.tenants)
            raw = await state.services.redis.get(job_key(job_id))
            return _owned(raw, tenant).body
        except ApiError:
            return None


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
    # Listen before reading, so a change between the two is not missed. (The process's one
    # pub/sub connection carries it: a waiting stream holds no Redis connection.)
    async with services.events.listen(job_id) as messages:
        record = await load_job(services, tenant, job_id)
        yield record
        quiet = 0.0
        while record["state"] not in TERMINAL:
            left = RECHECK_S if deadline is None else min(RECHECK_S, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                data = await asyncio.wait_for(messages.get(), left)
            except TimeoutError:
                fresh = await load_job(services, tenant, job_id)
                quiet += left
                if fresh != record:
                    record, quiet = fresh, 0.0
                    yield record
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield None
                continue
            update = json.loads(data)
            if update.get("version", 0) <= record.get("version", 0):
                continue  # published before the record we already have
            record, quiet = update, 0.0
            yield record


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
        raw = cast(str | None, await services.redis.get(job_key(job_id)))
        return Response(_owned(raw, tenant).body, media_type="application/json")
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
        services.queue.withdraw(updated["tenant"], rq_job_id(updated["id"], updated["attempts"]))
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
