"""Dependencies of the handlers, as ``Annotated`` aliases (tests may override them)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, Request

from app.errors import ApiError, ErrorCode
from app.services import Services
from vidcap.config import Settings

LOCAL_TENANT = "local"  # the tenant of a server run without API keys


async def get_services(request: Request) -> Services:
    """The app's services (built by the lifespan)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    """The app's settings."""
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def tenant_of(authorization: str, tenants: dict[str, str]) -> str:
    """The tenant of an ``Authorization: Bearer KEY`` header value.

    Raises:
        ApiError: 401 when keys are configured and the key is missing or unknown.
    """
    if not tenants:
        return LOCAL_TENANT
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "send your API key as `Authorization: Bearer KEY`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Compare with every key, in constant time, so timing does not reveal a key's prefix.
    found = None
    for candidate, tenant in tenants.items():
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = tenant
    if found is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return found


async def get_tenant(request: Request) -> str:
    """The tenant of the request's API key (see :func:`tenant_of`)."""
    return tenant_of(request.headers.get("authorization", ""), request.app.state.tenants)


TenantDep = Annotated[str, Depends(get_tenant)]


async def admit(services: ServicesDep, tenant: TenantDep) -> str:
    """Back-pressure for requests that queue work: a full queue or a busy tenant gets 429.

    Returns:
        The tenant.
    """
    settings = services.settings
    if settings.rate_limit_per_minute:
        window = int(time.time() // 60)
        key = f"vidcap:rate:{tenant}:{window}"
        async with services.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 61)
            count, _ = await pipe.execute()
        if count > settings.rate_limit_per_minute:
            services.metrics.request_rejected(ErrorCode.RATE_LIMITED)
            retry = max(1, 60 * (window + 1) - int(time.time()))
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"more than {settings.rate_limit_per_minute} requests a minute; "
                f"try again in {retry} s",
                headers={"Retry-After": str(retry)},
            )
    depth = await services.queue_depth()
    if depth >= settings.max_queue_depth:
        services.metrics.request_rejected(ErrorCode.QUEUE_FULL)
        raise ApiError(
            ErrorCode.QUEUE_FULL,
            f"{depth} jobs are waiting, the most this server queues; try again shortly",
            headers={"Retry-After": "30"},
        )
    return tenant


AdmittedTenantDep = Annotated[str, Depends(admit)]
