"""What the API's handlers work with: settings, Redis clients, the store, the queue, metrics.

One :class:`Services` per app, built at start-up (lifespan) and closed at shutdown. Reads on
the hot path (job polls) use the asyncio client; writes that need transactions or RQ run the
synchronous store and queue in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry as SyncRetry

from app.events import EventHub
from settings import Settings
from storage import Storage, open_storage
from workers.connect import async_redis, sync_redis
from workers.fair import DEPTH_LUA, FairQueue, waiting_key
from workers.metrics import Metrics
from workers.queue import reap, rq_queue
from workers.store import RUNNING_KEY, WORKER_PREFIX, Store, answering

log = logging.getLogger(__name__)

REAP_EVERY_S = 5.0
# The asyncio client's connections per API process, and how long a request waits for one.
REDIS_CONNECTIONS = 200
REDIS_POOL_WAIT_S = 2.0


@dataclass
class Services:
    """The API's connections and shared objects."""

    settings: Settings
    redis: aredis.Redis  # text replies
    store: Store  # synchronous, text replies
    queue: FairQueue  # synchronous, bytes replies (RQ needs them)
    metrics: Metrics
    events: EventHub  # job change messages, one pub/sub connection for the process
    storage: Storage  # the videos and what the workers made of them

    @classmethod
    def connect(cls, settings: Settings) -> Services:
        """Clients of the service's Redis (nothing is sent yet)."""
        if not settings.redis_configured:
            raise ValueError(
                "REDIS_URL is not set: `vidcap run` starts a Redis for you; "
                "`vidcap serve` needs REDIS_URL=redis://host:port/0 (or VIDCAP_REDIS_SENTINELS)"
            )
        # A stalled Redis fails a request's command within about 2 s (503 redis_unavailable).
        text = sync_redis(settings, decode=True, **answering(SyncRetry))
        # A burst of requests waits briefly for a pooled connection rather than failing when
        # all are in use (redis-py's default pool raises at once).
        client = async_redis(
            settings,
            max_connections=REDIS_CONNECTIONS,
            pool_timeout=REDIS_POOL_WAIT_S,
            **answering(AsyncRetry),
        )
        return cls(
            settings=settings,
            redis=client,
            events=EventHub(client),
            store=Store(text, settings.retention_s),
            queue=rq_queue(sync_redis(settings, decode=False, **answering(SyncRetry)), settings),
            metrics=Metrics(text),
            storage=open_storage(settings),
        )

    async def queue_depth(self) -> int:
        """Jobs waiting on the queue, all tenants together."""
        return int(await self.redis.eval(DEPTH_LUA, 0, self.queue.prefix))

    async def tenant_waiting(self, tenant: str) -> int:
        """Jobs of ``tenant`` waiting on the queue."""
        return int(await self.redis.llen(waiting_key(self.queue.name, tenant)))

    async def running(self) -> int:
        """Jobs a worker has started and not finished."""
        return int(await self.redis.scard(RUNNING_KEY))

    async def workers(self) -> list[dict[str, Any]]:
        """Live workers (each refreshes its key every few seconds)."""
        keys = [k async for k in self.redis.scan_iter(match=WORKER_PREFIX + "*", count=500)]
        values = cast(list[str | None], await self.redis.mget(keys)) if keys else []
        return [json.loads(v) for v in values if v is not None]

    async def reaper(self) -> None:
        """Retries or fails jobs of dead workers, forever (a lifespan task)."""
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            try:
                await asyncio.to_thread(reap, self.store, self.queue, self.settings)
            except Exception as e:  # Redis restarting: try again next time
                log.warning("reaper: %s", e)

    async def close(self) -> None:
        """Closes every connection."""
        await self.events.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        self.store.redis.close()
        self.queue.connection.close()
