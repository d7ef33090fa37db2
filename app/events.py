"""One Redis pub/sub connection per API process, shared by every event stream and long poll.

Each ``GET /v1/jobs/{id}/events`` stream and ``?wait=`` poll used to subscribe with a pub/sub
connection of its own, taken from the pool of 100 that every request shares: about 100 open
streams (one tenant could open them) left the other requests nothing, and they answered 503
while Redis was healthy. Here one connection listens to every job's channel (a pattern
subscription) and hands each message to the waiters of that job in this process; a stream
costs no connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import redis.asyncio as aredis
from redis.exceptions import RedisError

from workers.store import events_channel

log = logging.getLogger(__name__)

PATTERN = events_channel("*")
# Messages kept for a waiter that has not taken them yet; beyond that the oldest go (a waiter
# re-reads the record now and then, so nothing is lost for good).
WAITER_BACKLOG = 64
RECONNECT_S = 1.0


class EventHub:
    """Listens to every job's channel on one connection and fans messages out in-process."""

    def __init__(self, redis: aredis.Redis) -> None:
        self.redis = redis
        self.waiters: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts listening (a task of the running loop)."""
        self._task = asyncio.create_task(self._listen(), name="event-hub")

    async def close(self) -> None:
        """Stops listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of the job's messages (JSON records), from now until the block ends."""
        channel = events_channel(job_id)
        queue: asyncio.Queue[str] = asyncio.Queue(WAITER_BACKLOG)
        self.waiters[channel].add(queue)
        try:
            yield queue
        finally:
            self.waiters[channel].discard(queue)
            if not self.waiters[channel]:
                del self.waiters[channel]

    def _deliver(self, channel: str, data: str) -> None:
        for queue in self.waiters.get(channel, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(data)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(PATTERN)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is not None and message["type"] == "pmessage":
                        self._deliver(message["channel"], message["data"])
            except RedisError as e:  # Redis restarting: waiters re-read records meanwhile
                log.warning("event hub: %s; listening again in %.0f s", e, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
