"""Dynamic batching: requests for one served version queue, and one worker thread runs them in batches.

A batch starts when ``max_batch_size`` rows of one key (requests that can share a batch: the same
trailing shape, or text) are waiting, or ``max_delay`` seconds after its first request arrived,
whichever is first; while a batch runs, the next one gathers. ``max_batch_size=1`` runs each
request alone, at once (batching off). A request with more rows than ``max_batch_size`` runs alone.
:meth:`Batcher.close` stops taking requests; those already queued still run, then the thread ends.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "BatcherClosed"]

logger = logging.getLogger("hub.serving")


class BatcherClosed(RuntimeError):
    """The batcher was closed (its version was switched out): submit to the current one."""


@dataclass
class _Item:
    work: Any
    future: Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """One version's request queue and the thread that runs it.

    Args:
        run: runs a list of works of one key as one batch; returns one result per work.
        max_batch_size: the most rows in a batch (1: no batching).
        max_delay: seconds the first request of a batch waits for others.
        name: for the thread's name and the log.
        observe: called with ``(batch_rows, queue_seconds_of_each_request)`` before each batch runs.
        setup: called once in the worker thread before its first batch.
    """

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int, max_delay: float, name: str,
                 observe: Callable[[int, list[float]], None] | None = None, setup: Callable[[], None] | None = None) -> None:
        self._run, self.max_batch_size, self.max_delay = run, max_batch_size, max_delay
        self._observe, self._setup = observe, setup
        self._pending: collections.deque[_Item] = collections.deque()
        self._rows: collections.Counter[Any] = collections.Counter()  # rows waiting, by key
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"batcher {name}", daemon=True)
        self._thread.start()

    def submit(self, work: Any) -> Future:
        """Queue ``work`` (it has ``key`` and ``rows``); the future gets its result.

        Raises:
            BatcherClosed: the batcher was closed.
        """
        item = _Item(work, Future())
        with self._condition:
            if self._closed:
                raise BatcherClosed("this version was switched out")
            self._pending.append(item)
            self._rows[work.key] += work.rows
            # wake the worker only when it waits for a first request or a batch just filled: a wake-up per
            # request would make the request threads and the worker trade the GIL for every one
            if len(self._pending) == 1 or self._rows[work.key] >= self.max_batch_size:
                self._condition.notify()
        return item.future

    def close(self, wait: float | None = None) -> None:
        """Take no more requests; the queued ones still run. ``wait``: seconds to wait for the thread to end."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        if wait is not None:
            self._thread.join(wait)

    @property
    def queued(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._pending)

    def _next_batch(self) -> list[_Item] | None:
        """The next batch, taken off the queue (waiting as the rules say); None once closed and empty."""
        with self._condition:
            while not self._pending:
                if self._closed:
                    return None
                self._condition.wait()
            first = self._pending[0]
            deadline = first.arrived + self.max_delay
            while not self._closed and self._rows[first.work.key] < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch, rows, kept = [], 0, collections.deque()
            for item in self._pending:
                if item.work.key == first.work.key and (not batch or rows + item.work.rows <= self.max_batch_size):
                    batch.append(item)
                    rows += item.work.rows
                else:
                    kept.append(item)
            self._pending = kept
            self._rows[first.work.key] -= rows
            return batch

    def _work(self) -> None:
        if self._setup is not None:
            self._setup()
        while (batch := self._next_batch()) is not None:
            started = time.monotonic()
            if self._observe is not None:
                self._observe(sum(item.work.rows for item in batch), [started - item.arrived for item in batch])
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self._run([item.work for item in live])
            except BaseException as error:  # every request of the batch gets the failure
                if not isinstance(error, Exception):
                    raise
                logger.debug("batch failed: %s", error)
                for item in live:
                    item.future.set_exception(error)
                continue
            for item, result in zip(live, results):
                item.future.set_result(result)
