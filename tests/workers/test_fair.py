"""The fair queue (workers/fair.py) on a real redis-server: round robin across tenants, the
per-tenant running cap, leases, cancels and the depth the API's back-pressure reads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from rq.exceptions import DequeueTimeout

from workers.fair import FairQueue, fair_queue


def queue(client: redis.Redis, **changes: Any) -> FairQueue:
    options: dict[str, Any] = {"lease_s": 30.0, "max_running_per_tenant": 0, "keep_s": 3600}
    return fair_queue(client, "test", **{**options, **changes})


def put(q: FairQueue, tenant: str, name: str, *, at_front: bool = False) -> str:
    q.enqueue_tenant_job(
        tenant, at_front=at_front, func="workers.tasks.caption_video", args=(name,), job_id=name
    )
    return name


def drain(q: FairQueue) -> list[str]:
    taken = []
    while (popped := q.pop()) is not None:
        taken.append(popped[1])
    return taken


def test_tenants_are_served_round_robin_not_first_come(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    for i in range(5):
        put(q, "alice", f"a{i}")
    put(q, "bob", "b0")
    put(q, "carol", "c0")
    put(q, "carol", "c1")
    assert q.count == 8
    assert drain(q) == ["a0", "b0", "c0", "a1", "c1", "a2", "a3", "a4"]
    assert q.count == 0


def test_a_tenant_arriving_behind_a_backlog_is_served_next(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    for i in range(50):
        put(q, "alice", f"a{i}")
    assert q.pop() == ("alice", "a0")  # a worker is busy with alice's first job
    put(q, "bob", "b0")
    assert q.pop() == ("bob", "b0")
    assert q.pop() == ("alice", "a1")


def test_a_retry_goes_before_its_tenants_other_jobs(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    put(q, "alice", "a0")
    put(q, "alice", "a1")
    put(q, "alice", "a2-retry", at_front=True)
    assert drain(q) == ["a2-retry", "a0", "a1"]


def test_the_running_cap_holds_until_a_slot_is_released(redis_client: redis.Redis) -> None:
    q = queue(redis_client, max_running_per_tenant=1)
    put(q, "alice", "a0")
    put(q, "alice", "a1")
    put(q, "bob", "b0")
    assert q.pop() == ("alice", "a0")
    assert q.pop() == ("bob", "b0")
    assert q.pop() is None  # alice runs her one job; bob has none waiting
    assert q.running("alice") == 1
    assert q.waiting("alice") == 1
    assert q.release("alice", "a0")
    assert q.pop() == ("alice", "a1")


def test_a_dead_workers_slot_lapses_with_its_lease_and_a_heartbeat_keeps_it(
    redis_client: redis.Redis,
) -> None:
    q = queue(redis_client, max_running_per_tenant=1, lease_s=0.4)
    put(q, "alice", "a0")
    put(q, "alice", "a1")
    put(q, "alice", "a2")
    assert q.pop() == ("alice", "a0")
    for _ in range(4):  # renewed: the slot stays taken past the lease
        time.sleep(0.2)
        assert q.renew("alice", "a0")
        assert q.pop() is None
    assert q.pop() is None
    time.sleep(0.6)  # no heartbeat: the worker died
    assert q.running("alice") == 0
    assert q.pop() == ("alice", "a1")


def test_a_canceled_job_leaves_its_tenants_list(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    put(q, "alice", "a0")
    put(q, "alice", "a1")
    put(q, "bob", "b0")
    assert q.withdraw("alice", "a0")
    assert not q.withdraw("alice", "a0")
    assert q.count == 2
    assert drain(q) == ["a1", "b0"]


def test_an_idle_worker_wakes_when_a_job_arrives(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    got: list[Any] = []
    worker = threading.Thread(
        target=lambda: got.append(FairQueue.dequeue_any([q], 60, connection=redis_client))
    )
    worker.start()
    time.sleep(0.3)
    put(q, "alice", "a0")
    worker.join(30)
    assert not worker.is_alive()
    job, from_queue = got[0]
    assert job.id == "a0"
    assert job.meta["tenant"] == "alice"
    assert from_queue is q
    with pytest.raises(DequeueTimeout):
        FairQueue.dequeue_any([q], 1, connection=redis_client)
    assert FairQueue.dequeue_any([q], None, connection=redis_client) is None


def test_a_job_whose_data_expired_is_skipped(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    put(q, "alice", "a0")
    put(q, "alice", "a1")
    redis_client.delete("rq:job:a0")
    job, _ = FairQueue.dequeue_any([q], None, connection=redis_client)  # type: ignore[misc]
    assert job.id == "a1"
    assert q.running("alice") == 1  # a0's slot was given back


def test_jobs_left_on_rqs_plain_list_are_adopted(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    redis_client.rpush(q.key, "old-a1", "old-gone-a1")
    moved = q.adopt(lambda rq_id: None if "gone" in rq_id else "alice")
    assert moved == 1
    assert redis_client.llen(q.key) == 0
    assert drain(q) == ["old-a1"]


def test_nothing_of_the_queue_is_left_once_every_job_ended(redis_client: redis.Redis) -> None:
    q = queue(redis_client)
    put(q, "alice", "a0")
    put(q, "bob", "b0")
    put(q, "bob", "b1")
    assert q.withdraw("bob", "b1")
    for tenant, job_id in [q.pop(), q.pop()]:  # type: ignore[misc]
        assert q.release(tenant, job_id)
    assert q.pop() is None
    assert [k for k in redis_client.keys("vidcap:fair:*")] == []
