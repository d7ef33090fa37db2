"""Fair dequeue across tenants, and a cap on each tenant's running jobs.

RQ's queue is one FIFO list: a tenant that queues 50 jobs makes every other tenant wait for all
50. :class:`FairQueue` keeps RQ's job hashes, registries and worker loop, but not the list:
each tenant's waiting jobs are a list of their own, and a worker takes its next job from the
tenant served longest ago (round robin), skipping tenants already running their cap. A tenant's
one job therefore waits for at most one job per worker, however long another tenant's backlog.

Redis keys, under ``vidcap:fair:{queue name}:``:

- ``tenants``: the round, a list of the tenants with waiting jobs: a worker takes the first
  tenant under its cap and moves it to the end. A tenant that was not waiting joins just ahead
  of ``last``, the tenant served last, so it is served next.
- ``waiting:{tenant}``: the tenant's waiting RQ job ids, oldest first (a retry goes first).
- ``active:{tenant}``: sorted set of the tenant's jobs handed to a worker, scored by the end of
  their lease (Redis clock, microseconds). A job's heartbeat renews its lease and its end
  releases it; a worker that dies loses the slot when the lease lapses, as the reaper declares
  it lost.
- ``wake``: a pub/sub channel with a message per new job or freed slot; idle workers listen.

Every change is one Lua script, so API processes and workers on any number of machines agree.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis
from redis.client import Pipeline, PubSub
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

# The tenant of the job being enqueued: RQ's enqueue path hands push_job_id only the job id.
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)

# An idle worker looks for work this often even without a wake message (a dead worker's slot
# lapses silently).
POLL_S = 5.0

_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# ARGV: prefix, tenant, job id, "1" to put it first, seconds the list may outlive its jobs.
# A tenant that was not waiting joins the round just ahead of the tenant served last (or at
# the end, when that one is not waiting any more): it is next, after the one just served.
_PUSH = """
local prefix, tenant, id = ARGV[1], ARGV[2], ARGV[3]
local waiting = prefix .. 'waiting:' .. tenant
local new = redis.call('LLEN', waiting) == 0
if ARGV[4] == '1' then
  redis.call('LPUSH', waiting, id)
else
  redis.call('RPUSH', waiting, id)
end
redis.call('EXPIRE', waiting, tonumber(ARGV[5]))
local ring = prefix .. 'tenants'
if new and not redis.call('LPOS', ring, tenant) then
  local last = redis.call('GET', prefix .. 'last')
  if not last or redis.call('LINSERT', ring, 'BEFORE', last, tenant) < 0 then
    redis.call('RPUSH', ring, tenant)
  end
end
redis.call('PUBLISH', prefix .. 'wake', '1')
return redis.call('LLEN', waiting)
"""

# ARGV: prefix, lease (us), most running jobs per tenant (0: no cap).
# Returns {tenant, job id}, or nil when no tenant under its cap has a waiting job.
_POP = (
    _NOW_US
    + """
local prefix, lease, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ring = prefix .. 'tenants'
local found = nil
for _, tenant in ipairs(redis.call('LRANGE', ring, 0, -1)) do
  local waiting = prefix .. 'waiting:' .. tenant
  local active = prefix .. 'active:' .. tenant
  redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
  if redis.call('LLEN', waiting) == 0 then
    redis.call('LREM', ring, 0, tenant)
  elseif cap == 0 or redis.call('ZCARD', active) < cap then
    local id = redis.call('LPOP', waiting)
    redis.call('ZADD', active, now + lease, id)
    redis.call('PEXPIRE', active, math.ceil(lease / 1000))
    redis.call('LREM', ring, 0, tenant)
    if redis.call('LLEN', waiting) > 0 then
      redis.call('RPUSH', ring, tenant)
    end
    redis.call('SET', prefix .. 'last', tenant)
    found = {tenant, id}
    break
  end
end
if redis.call('LLEN', ring) == 0 then
  redis.call('DEL', prefix .. 'last')
end
return found
"""
)

# ARGV: prefix, tenant, job id, lease (us). Renews a running job's lease (if it still has one).
_RENEW = (
    _NOW_US
    + """
local active = ARGV[1] .. 'active:' .. ARGV[2]
local lease = tonumber(ARGV[4])
local renewed = redis.call('ZADD', active, 'XX', 'CH', now + lease, ARGV[3])
if redis.call('PTTL', active) < lease / 1000 then
  redis.call('PEXPIRE', active, math.ceil(lease / 1000))
end
return renewed
"""
)

# ARGV: prefix, tenant, job id. Ends a job's lease and wakes a worker for the freed slot.
_RELEASE = """
local removed = redis.call('ZREM', ARGV[1] .. 'active:' .. ARGV[2], ARGV[3])
if removed == 1 then
  redis.call('PUBLISH', ARGV[1] .. 'wake', '1')
end
return removed
"""

# ARGV: prefix, tenant, job id. Takes a waiting job off its tenant's list (a cancel).
_WITHDRAW = """
local waiting = ARGV[1] .. 'waiting:' .. ARGV[2]
local removed = redis.call('LREM', waiting, 0, ARGV[3])
if redis.call('LLEN', waiting) == 0 then
  redis.call('LREM', ARGV[1] .. 'tenants', 0, ARGV[2])
  if redis.call('LLEN', ARGV[1] .. 'tenants') == 0 then
    redis.call('DEL', ARGV[1] .. 'last')
  end
end
return removed
"""

# ARGV: prefix. Waiting jobs of every tenant.
DEPTH_LUA = """
local total = 0
for _, tenant in ipairs(redis.call('LRANGE', ARGV[1] .. 'tenants', 0, -1)) do
  total = total + redis.call('LLEN', ARGV[1] .. 'waiting:' .. tenant)
end
return total
"""


def fair_prefix(queue_name: str) -> str:
    """The prefix of the fair queue's keys for RQ queue ``queue_name``."""
    return f"vidcap:fair:{queue_name}:"


def waiting_key(queue_name: str, tenant: str) -> str:
    """The list of ``tenant``'s waiting job ids."""
    return f"{fair_prefix(queue_name)}waiting:{tenant}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FairQueue(Queue):
    """An RQ queue whose jobs wait per tenant and are taken round robin.

    Args:
        lease_s: How long a job handed to a worker holds its tenant's running slot without a
            heartbeat (the worker-lost time).
        max_running_per_tenant: Jobs of one tenant running at once (0: no cap).
        keep_s: How long a tenant's waiting list may outlive its newest job (the retention).
        Other arguments are RQ's.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        lease_s: float = 15.0,
        max_running_per_tenant: int = 0,
        keep_s: float = 7 * 86400,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.prefix = fair_prefix(self.name)
        self.wake_channel = self.prefix + "wake"
        self._listener: PubSub | None = None
        self.lease_us = max(1000, round(lease_s * 1_000_000))
        self.max_running_per_tenant = max_running_per_tenant
        self.keep_s = max(1, math.ceil(keep_s))
        self._push = self.connection.register_script(_PUSH)
        self._pop = self.connection.register_script(_POP)
        self._renew = self.connection.register_script(_RENEW)
        self._release = self.connection.register_script(_RELEASE)
        self._withdraw = self.connection.register_script(_WITHDRAW)
        self._depth = self.connection.register_script(DEPTH_LUA)

    # --- putting jobs in ------------------------------------------------------------------

    def enqueue_tenant_job(self, tenant: str, *, at_front: bool = False, **create: Any) -> Job:
        """Creates an RQ job (``create`` as for :meth:`Queue.create_job`) and puts it on
        ``tenant``'s waiting list; the tenant is also kept in the job's meta."""
        meta = {**(create.pop("meta", None) or {}), "tenant": tenant}
        job = self.create_job(meta=meta, **create)
        return self.enqueue_job(job, at_front=at_front)

    def enqueue_job(
        self, job: Job, pipeline: Pipeline | None = None, at_front: bool = False,
        unique: bool = False,
    ) -> Job:  # fmt: skip
        """RQ's enqueue, onto the waiting list of the tenant in ``job.meta``."""
        if not job.meta.get("tenant"):
            raise ValueError(f"job {job.id} names no tenant: use enqueue_tenant_job")
        token = _tenant.set(str(job.meta["tenant"]))
        try:
            return super().enqueue_job(job, pipeline=pipeline, at_front=at_front, unique=unique)
        finally:
            _tenant.reset(token)

    def push_job_id(
        self, job_id: str, pipeline: Pipeline | None = None, at_front: bool = False
    ) -> None:
        """Called by RQ's enqueue: the id goes on its tenant's list, not RQ's one list."""
        tenant = _tenant.get()
        if tenant is None:
            raise ValueError(f"job {job_id}: a fair queue takes jobs through enqueue_job only")
        args = [self.prefix, tenant, job_id, "1" if at_front else "0", self.keep_s]
        self._push(args=args, client=pipeline if pipeline is not None else self.connection)

    def adopt(self, tenant_of: Callable[[str], str | None]) -> int:
        """Moves job ids left on RQ's plain list (queued by a vidcap from before fair queues)
        onto their tenants' lists; ``tenant_of`` maps an RQ job id to its tenant (None: the
        job is gone, drop it). Returns how many were moved."""
        moved = 0
        while (raw := self.connection.lpop(self.key)) is not None:
            job_id = _text(raw)
            tenant = tenant_of(job_id)
            if tenant is not None:
                self._push(args=[self.prefix, tenant, job_id, "0", self.keep_s])
                moved += 1
        return moved

    # --- reading ----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Jobs waiting, all tenants together."""
        return int(cast(int, self._depth(args=[self.prefix])))

    def waiting(self, tenant: str) -> int:
        """Jobs of ``tenant`` waiting."""
        return int(cast(int, self.connection.llen(waiting_key(self.name, tenant))))

    def running(self, tenant: str) -> int:
        """Jobs of ``tenant`` handed to a worker whose lease has not lapsed."""
        seconds, micros = cast(tuple[int, int], self.connection.time())
        now_us = seconds * 1_000_000 + micros  # leases end in Redis-clock microseconds
        key = self.prefix + "active:" + tenant
        return int(cast(int, self.connection.zcount(key, f"({now_us}", "+inf")))

    # --- taking jobs out --------------------------------------------------------------------

    def pop(self) -> tuple[str, str] | None:
        """Takes the next job (round robin over tenants under their cap): (tenant, RQ id)."""
        found = self._pop(args=[self.prefix, self.lease_us, self.max_running_per_tenant])
        if not found:
            return None
        tenant, job_id = found
        return _text(tenant), _text(job_id)

    def renew(self, tenant: str, job_id: str) -> bool:
        """Extends a running job's lease by the lease time (its heartbeat)."""
        return bool(self._renew(args=[self.prefix, tenant, job_id, self.lease_us]))

    def release(self, tenant: str, job_id: str) -> bool:
        """Frees a running job's slot (it ended, or went back on the queue)."""
        return bool(self._release(args=[self.prefix, tenant, job_id]))

    def withdraw(self, tenant: str, job_id: str, pipeline: Pipeline | None = None) -> bool:
        """Takes a waiting job off the queue (it was canceled); False if it was not waiting.

        With ``pipeline``, the command joins it (and the result is the pipeline's)."""
        client = pipeline if pipeline is not None else self.connection
        return bool(self._withdraw(args=[self.prefix, tenant, job_id], client=client))

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """The worker's dequeue: the next fair job, waiting up to ``timeout`` s for one
        (None: do not wait). Raises DequeueTimeout when none came in time."""
        fair = [q for q in queues if isinstance(q, FairQueue)]
        if not fair:
            raise TypeError("FairQueue.dequeue_any needs fair queues")
        job_cls = job_class or Job
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for queue in fair:
                popped = queue.pop()
                if popped is None:
                    continue
                tenant, job_id = popped
                try:
                    job = job_cls.fetch(
                        job_id, connection=connection, serializer=serializer or queue.serializer
                    )
                except NoSuchJobError:  # expired or deleted while waiting: take the next one
                    queue.release(tenant, job_id)
                    break
                return job, queue
            else:
                if deadline is None:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DequeueTimeout(timeout, [q.key for q in fair])
                fair[0].wait_for_work(fair, min(left, POLL_S))

    def wait_for_work(self, queues: list[FairQueue], seconds: float) -> None:
        """Waits until a job is pushed or a slot freed on any of ``queues``, or ``seconds``.

        The wake channel stays subscribed between waits, so a message published while the
        worker was busy or looking is not lost (it costs one more look at most).
        """
        if self._listener is None:
            listener = self.connection.pubsub(ignore_subscribe_messages=True)
            listener.subscribe(*[q.wake_channel for q in queues])
            self._listener = listener
            return  # look again: a job may have come before the subscription
        try:
            if self._listener.get_message(timeout=seconds) is not None:
                while self._listener.get_message(timeout=0) is not None:
                    pass  # one look serves every message that came meanwhile
        except redis.RedisError:
            with contextlib.suppress(redis.RedisError):
                self._listener.close()
            self._listener = None
            raise


def fair_queue(
    connection: redis.Redis,
    name: str,
    *,
    lease_s: float,
    max_running_per_tenant: int,
    keep_s: float,
) -> FairQueue:
    """The fair queue ``name`` with RQ's JSON serializer (``connection`` must return bytes)."""
    return FairQueue(
        name,
        connection=connection,
        serializer=JSONSerializer,
        lease_s=lease_s,
        max_running_per_tenant=max_running_per_tenant,
        keep_s=keep_s,
    )
