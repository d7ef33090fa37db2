"""Batching model calls across jobs: several job threads of one worker process, one forward pass.

RQ hands a worker one job at a time, so a worker process runs several job threads
(``VIDCAP_WORKER_THREADS``, :mod:`workers.runtime`) and their model calls meet here. A
:class:`Batcher` gathers the calls that arrive within ``wait_s`` of the first (or until
``max_batch`` are waiting), runs them as one call of the batched function on its own thread,
and hands each caller its own result, or the exception the batch raised.

A caller blocks in :meth:`Batcher.submit` until its result is ready; RQ's job timeout and
a cancel still reach the job thread there (it waits in short turns, so an asynchronous
exception lands within ``TURN_S``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

TURN_S = 0.05  # how often a waiting caller wakes (so a timeout exception can land)


@dataclass
class _Call(Generic[Item, Result]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """What a batcher has done: calls, batches, and the largest batch."""

    calls: int = 0
    batches: int = 0
    largest: int = 0

    @property
    def mean(self) -> float:
        """Calls per batch, on average."""
        return self.calls / self.batches if self.batches else 0.0


class Batcher(Generic[Item, Result]):
    """Runs ``run(items) -> results`` (same length, same order) on batches of submitted items.

    Args:
        run: The batched function (a model call). Called on the batcher's thread only.
        max_batch: The most items in one call.
        wait_s: How long the first item of a batch waits for others to join it.
        name: For the thread's name and logs.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        max_batch: int = 16,
        wait_s: float = 0.005,
        name: str = "batcher",
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.name = name
        self.stats = BatchStats()
        self._queue: list[_Call[Item, Result]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Result:
        """Runs ``item`` in the next batch; returns its result (or raises the batch's error)."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Runs ``items`` (together, and with whatever other threads submit meanwhile);
        returns their results in order, or raises the first error of their batches."""
        calls: list[_Call[Item, Result]] = [_Call(item) for item in items]
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"{self.name} is stopped")
            self._queue.extend(calls)
            self._cond.notify()
        for call in calls:
            while not call.done.wait(TURN_S):
                pass
        for call in calls:
            if call.error is not None:
                raise call.error
        return [call.result for call in calls]  # type: ignore[misc]  # set with done

    def close(self) -> None:
        """Stops the thread once the calls already submitted are done."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _take(self) -> list[_Call[Item, Result]] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return None  # stopped, nothing left
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < self.max_batch and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = list(self._run([c.item for c in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"{self.name}: {len(batch)} items gave {len(results)} results"
                    )
                for call, result in zip(batch, results, strict=True):
                    call.result = result
            except BaseException as e:  # every caller of the batch gets the error
                log.warning("%s: a batch of %d failed: %s", self.name, len(batch), e)
                for call in batch:
                    call.error = e
            self.stats.calls += len(batch)
            self.stats.batches += 1
            self.stats.largest = max(self.stats.largest, len(batch))
            for call in batch:
                call.done.set()
