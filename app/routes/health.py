"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from redis.exceptions import RedisError

from app.deps import ServicesDep, tenant_of
from app.errors import ApiError, ErrorCode, error_responses
from app.schemas import Health
from storage import StorageError
from workers.metrics import Gauge

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The API process is alive (it checks nothing else)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=error_responses(
        ErrorCode.REDIS_UNAVAILABLE, ErrorCode.STORAGE_UNAVAILABLE, ErrorCode.NOT_READY
    ),
)
async def readyz(request: Request, services: ServicesDep) -> Health:
    """Ready to caption: Redis and the video store answer, and at least one worker has its
    model loaded.

    Anyone may ask (load balancers send no key); only a caller with an API key (or any
    caller when no keys are configured) sees the workers (host, pid, model) and Redis's error.
    """
    try:
        tenant_of(request.headers.get("authorization", ""), request.app.state.tenants)
        detailed = True
    except ApiError:
        detailed = False
    try:
        await services.redis.ping()
        workers = await services.workers()
    except RedisError as e:
        message = f"Redis does not answer: {e}" if detailed else "Redis does not answer"
        raise ApiError(ErrorCode.REDIS_UNAVAILABLE, message, headers={"Retry-After": "5"}) from None
    try:
        await asyncio.to_thread(services.storage.check)
    except StorageError as e:
        message = str(e) if detailed else "the video store does not answer"
        raise ApiError(
            ErrorCode.STORAGE_UNAVAILABLE, message, headers={"Retry-After": "5"}
        ) from None
    if not workers:
        raise ApiError(
            ErrorCode.NOT_READY,
            "no worker is running: start one with `vidcap worker`",
            headers={"Retry-After": "5"},
        )
    return Health(status="ready", workers=workers if detailed else None)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics: queue depth, jobs by state, job and stage durations, failures."""
    depth, running, workers = await asyncio.gather(
        services.queue_depth(), services.running(), services.workers()
    )
    gauges = {
        "vidcap_queue_depth": Gauge("Jobs waiting on the queue.", {(): depth}),
        "vidcap_jobs_running": Gauge("Jobs a worker is running now.", {(): running}),
        "vidcap_workers": Gauge("Live workers with their model loaded.", {(): len(workers)}),
    }
    text = await asyncio.to_thread(services.metrics.render, gauges)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
