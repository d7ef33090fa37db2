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
