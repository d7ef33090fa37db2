"""Redis clients from the settings: one server (REDIS_URL), or a primary found through Sentinel.

With VIDCAP_REDIS_SENTINELS set, every client asks the sentinels where the primary is, and asks
again when its connection fails or the server it reaches has become a replica: after a
failover the API, the workers and their RQ loops carry on against the promoted replica without
a restart. (Redis Cluster is not an option: RQ's keys for one job live in several slots.)
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.connection import parse_url
from redis.sentinel import Sentinel

from settings import Settings

# How long a client waits for a sentinel's answer before it asks the next one.
SENTINEL_TIMEOUT_S = 1.0


def _server_options(settings: Settings) -> dict[str, Any]:
    """Database and credentials from REDIS_URL, for clients that find the server elsewhere."""
    if settings.redis_url is None:
        return {}
    parts = parse_url(settings.redis_url)
    return {k: parts[k] for k in ("db", "username", "password") if parts.get(k) is not None}


def _missing() -> ValueError:
    return ValueError(
        "no Redis: set REDIS_URL=redis://host:port/0, or VIDCAP_REDIS_SENTINELS and "
        "VIDCAP_REDIS_SENTINEL_MASTER (`vidcap run` starts its own Redis when neither is set)"
    )


def _through_sentinel(settings: Settings, sentinel_class: Any, **options: Any) -> Any:
    """A client of the primary the sentinels name (``sentinel_class``: redis-py's sync or
    asyncio Sentinel), or None without sentinels."""
    addresses = settings.sentinel_addresses()
    if not addresses:
        return None
    timeouts = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    sentinel = sentinel_class(addresses, sentinel_kwargs=timeouts)
    return sentinel.master_for(
        settings.redis_sentinel_master, **_server_options(settings), **options
    )


def sync_redis(settings: Settings, *, decode: bool, **options: Any) -> redis.Redis:
    """A client of the service's Redis (``decode``: text replies; RQ needs bytes)."""
    client = _through_sentinel(settings, Sentinel, decode_responses=decode, **options)
    if client is not None:
        return cast(redis.Redis, client)
    if settings.redis_url is None:
        raise _missing()
    return redis.Redis.from_url(settings.redis_url, decode_responses=decode, **options)


def async_redis(
    settings: Settings, *, max_connections: int, pool_timeout: float, **options: Any
) -> aredis.Redis:
    """The API's asyncio client (text replies) with at most ``max_connections`` connections.

    On one server a request waits up to ``pool_timeout`` for a free connection; through
    Sentinel the pool does not wait (redis-py has no blocking Sentinel pool) and a request
    past the bound fails at once, answered 503.
    """
    client = _through_sentinel(
        settings,
        AsyncSentinel,
        max_connections=max_connections,
        decode_responses=True,
        **options,
    )
    if client is not None:
        return cast(aredis.Redis, client)
    if settings.redis_url is None:
        raise _missing()
    pool = aredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=pool_timeout,
        decode_responses=True,
        **options,
    )
    return aredis.Redis(connection_pool=pool)
