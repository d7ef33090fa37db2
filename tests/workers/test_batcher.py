"""The batcher that joins model calls of several job threads into one call, and the watchdog
that ends a worker process whose job is stuck past its limit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import pytest

from workers.batcher import Batcher
from workers.runtime import EXIT_STUCK, Watchdog


def test_calls_from_many_threads_run_in_few_batches_and_each_gets_its_own_result() -> None:
    sizes: list[int] = []

    def square(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.05)  # a forward pass: the next callers gather meanwhile
        return [i * i for i in items]

    batcher = Batcher(square, max_batch=8, wait_s=0.02)
    results: dict[int, int] = {}
    start = threading.Barrier(24)

    def call(i: int) -> None:
        start.wait()
        results[i] = batcher.submit(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert results == {i: i * i for i in range(24)}
    assert sum(sizes) == 24 and max(sizes) <= 8
    assert len(sizes) <= 6  # 24 calls in batches, not one by one
    assert batcher.stats.calls == 24 and batcher.stats.mean >= 4


def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    def run(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("the model failed")
        return [s.upper() for s in items]

    batcher = Batcher(run, max_batch=4, wait_s=0.0)
    with pytest.raises(ValueError, match="the model failed"):
        batcher.submit_many(["a", "bad"])
    assert batcher.submit_many(["x", "y", "z"]) == ["X", "Y", "Z"]  # in order
    batcher.close()
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.submit("late")


def test_the_watchdog_ends_a_process_whose_job_is_stuck_past_its_limit() -> None:
    watchdog = Watchdog(grace_s=10)
    watchdog.started("job_a", timeout_s=0)
    assert watchdog.overdue() == []  # within the grace
    watchdog.ended("job_a")

    code = (
        "import threading, time\n"
        "from workers.runtime import Watchdog\n"
        "w = Watchdog(grace_s=0.1)\n"
        "w.started('job_stuck', timeout_s=0.1)\n"
        "w.watch(threading.Event(), every_s=0.05)\n"
        "time.sleep(30)\n"
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_STUCK
    assert "job_stuck" in done.stderr and "could not be interrupted" in done.stderr
    assert time.monotonic() - began < 20
