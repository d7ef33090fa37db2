"""Dependencies of the handlers, as ``Annotated`` aliases (tests may override them)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, Query, Request

from app.errors import ApiError, ErrorCode
from app.services import Services
from settings import Settings

LOCAL_TENANT = "local"  # the tenant of a server run without API keys
# Signed links (a <video src> or <track src> cannot send a key) last at least this long.
LINK_TTL_S = 12 * 3600
LINK_STEP_S = 3600  # expiries are rounded up to this, so a link is the same for an hour


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
    """Back-pressure for requests that queue work: a tenant over its rate or its own queue
    limit, or a full queue, gets 429.

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
    waiting = await services.tenant_waiting(tenant)
    if waiting >= settings.max_queued_per_tenant:
        services.metrics.request_rejected(ErrorCode.TENANT_QUEUE_FULL)
        raise ApiError(
            ErrorCode.TENANT_QUEUE_FULL,
            f"you have {waiting} jobs waiting, the most one tenant may queue; send more as "
            "they start",
            headers={"Retry-After": "30"},
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


# ---------------------------------------------------------------------------- signed links


def link_signature(key: bytes, video_id: str, tenant: str, expires: int) -> str:
    """HMAC-SHA256 (hex) of ``"{video_id}:{tenant}:{expires}"``: a link's ``sig``."""
    message = f"{video_id}:{tenant}:{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def link_query(key: bytes, video_id: str, tenant: str, now: float | None = None) -> str:
    """``expires=...&sig=...`` for a link to the video's media and captions.

    The expiry is at least LINK_TTL_S away, rounded up to the hour, so the link stays the same
    (and cacheable) for an hour.
    """
    now = time.time() if now is None else now
    expires = (int(now + LINK_TTL_S) // LINK_STEP_S + 1) * LINK_STEP_S
    return f"expires={expires}&sig={link_signature(key, video_id, tenant, expires)}"


def signed_tenant(
    key: bytes, tenants: dict[str, str], video_id: str, expires: str, sig: str
) -> str | None:
    """The tenant a valid, unexpired link signature was made for, else None."""
    if not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
        return None
    found = None
    for tenant in sorted(set(tenants.values())):  # every tenant, in constant time each
        expected = link_signature(key, video_id, tenant, int(expires))
        if hmac.compare_digest(expected.encode(), sig.lower().encode()):
            found = tenant
    return found


async def get_reader(
    request: Request,
    video_id: str,
    expires: Annotated[
        str | None, Query(max_length=20, description="Signed link: expiry (Unix time).")
    ] = None,
    sig: Annotated[
        str | None, Query(max_length=128, description="Signed link: signature (hex).")
    ] = None,
) -> str:
    """The tenant reading a video's media or captions: a Bearer key, or a signed link.

    A ``<video src>`` or ``<track src>`` cannot send ``Authorization``, so these routes also
    take the ``expires`` and ``sig`` of the video's ``media_url`` / ``captions_url``. A link
    grants reading that one video only; the route still checks that the tenant owns it.

    Raises:
        ApiError: 401 without a key, with an unknown key, or with a bad or expired link.
    """
    state = request.app.state
    authorization = request.headers.get("authorization")
    if not state.tenants or authorization is not None or expires is None or sig is None:
        return tenant_of(authorization or "", state.tenants)
    key = state.services.settings.url_signing_key()
    tenant = signed_tenant(key, state.tenants, video_id, expires, sig)
    if tenant is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "this link is expired or not valid: get a fresh one from GET /v1/videos/{id}, "
            "or send your API key as `Authorization: Bearer KEY`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


ReaderDep = Annotated[str, Depends(get_reader)]
