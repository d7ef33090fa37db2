"""The worker process's own parts on a real redis-server."""

from __future__ import annotations

import threading
import time

import redis
from rq.serializers import JSONSerializer

from workers.fair import FairQueue, fair_queue
from workers.runtime import STOP_CHECK_S, ThreadWorker, VidcapWorker


def test_a_stopping_worker_does_not_wait_a_minute_for_its_command_listener(
    redis_client: redis.Redis,
) -> None:
    queue = fair_queue(redis_client, "test", lease_s=15, max_running_per_tenant=0, keep_s=60)
    worker = VidcapWorker([queue], connection=redis_client, serializer=JSONSerializer)
    worker.subscribe()
    # The listener has read its unsubscribe reply and waits for a new subscription: the state
    # in which RQ's own listener (one look a minute) held a stopping worker for up to 60 s.
    worker.pubsub.unsubscribe()
    time.sleep(0.5)
    done = threading.Event()
    stopping = threading.Thread(target=lambda: (worker.unsubscribe(), done.set()), daemon=True)
    stopping.start()
    assert done.wait(10), "the worker's shutdown hung on its command listener"


def test_an_idle_job_thread_leaves_its_loop_soon_after_a_stop(redis_client: redis.Redis) -> None:
    queue = fair_queue(redis_client, "test", lease_s=15, max_running_per_tenant=0, keep_s=60)
    worker = ThreadWorker(
        [queue], connection=redis_client, serializer=JSONSerializer, queue_class=FairQueue
    )
    loop = threading.Thread(target=worker.work, kwargs={"with_scheduler": False}, daemon=True)
    loop.start()
    time.sleep(1.0)  # waiting for a job (RQ's own wait would last its 405 s dequeue timeout)
    began = time.monotonic()
    worker.stop()
    loop.join(15)
    assert not loop.is_alive()
    assert time.monotonic() - began < STOP_CHECK_S + 3


def spin(seconds: float) -> str:
    """A job that computes for ``seconds`` (Python code: a timeout can interrupt it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))
    return "done"


def test_a_job_thread_keeps_its_own_time_limit(redis_client: redis.Redis) -> None:
    from rq import Queue
    from rq.job import JobStatus

    queue = Queue("limits", connection=redis_client, serializer=JSONSerializer)
    slow = queue.enqueue(spin, 30, job_timeout=1)
    quick = queue.enqueue(spin, 0.1, job_timeout=5)
    worker = ThreadWorker([queue], connection=redis_client, serializer=JSONSerializer)
    began = time.monotonic()
    loop = threading.Thread(
        target=worker.work, kwargs={"burst": True, "with_scheduler": False}, daemon=True
    )
    loop.start()  # a thread, not the main one: RQ's SIGALRM limit cannot work here
    loop.join(30)
    assert not loop.is_alive()
    assert time.monotonic() - began < 15  # the 30 s job was stopped at its 1 s limit
    assert slow.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in (slow.latest_result().exc_string or "")
    assert quick.get_status(refresh=True) == JobStatus.FINISHED  # the next job ran as usual
