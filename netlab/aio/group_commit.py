"""Group commit: the blocking writes of many tasks made durable together, a batch per thread call.

Strategy (leader and followers, the way databases commit their logs): a task that submits an
item becomes the *leader* when no batch is being committed: it takes the waiting items, its own
among them, and hands them to ``commit(items)`` in one worker-thread call.  Items submitted
meanwhile wait (the *followers*); when the call returns, the leader gives every item of its batch
its outcome and wakes the oldest waiting item to lead the next batch.  So every item of a batch
shares the batch's fixed costs: one thread hop, one wake-up of the event loop, and whatever
``commit`` does once per batch (the mail store fsyncs each directory once).  And with one call
at a time, one worker thread competes with the event loop for the GIL, not many: every system
call a thread makes releases the GIL and takes it back, and each time the other side holds it the
two threads trade it through the kernel.

One committer at a time is enough while a batch takes little time.  When the disk is slow (the
waiting items would take longer than :data:`TARGET_LATENCY` for one committer, at the time per
item the last batches took), more leaders run at once, each with a share of the waiting items,
so their fsyncs overlap.

``commit`` gets the items in submission order and returns one :class:`outcome.Outcome` per item,
so one failed item fails only its own submitter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import outcome
import trio

__all__ = ["TARGET_LATENCY", "GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds of waiting work one committer may have before another one starts beside it.
TARGET_LATENCY = 0.010
#: Weight of the latest batch in the running estimate of the time per item.
_SMOOTHING = 0.2

Commit = Callable[[list[T]], list[outcome.Outcome[R]]]
RunBlocking = Callable[[Commit[T, R], list[T]], Awaitable[list[outcome.Outcome[R]]]]


@dataclass(eq=False)
class _Job(Generic[T, R]):
    item: T
    result: outcome.Outcome[R] | None = None
    #: Set when ``result`` is in, or (``result`` still None) when this job's task is to lead.
    wake: trio.Event = field(default_factory=trio.Event)


class GroupCommit(Generic[T, R]):
    """Batches for one blocking ``commit`` function.

    Args:
        commit: stores a batch (blocking); one outcome per item, in order.
        run: runs ``commit(items)`` in a worker thread (``trio.to_thread.run_sync`` with the
            caller's limiter, or inline in tests).  Once ``commit`` has started, ``run`` must
            wait for it (never abandon the thread): a ``Cancelled`` from ``run`` means that
            nothing of the batch was committed.
        max_parallel: the most batches committed at once.
    """

    def __init__(self, commit: Commit[T, R], run: RunBlocking[T, R], *, max_parallel: int = 4) -> None:
        self._commit = commit
        self._run = run
        self._max_parallel = max_parallel
        self._waiting: deque[_Job[T, R]] = deque()
        self._leaders = 0
        self._per_item = 0.0  # seconds, smoothed over the recent batches
        self.batches = 0  # commit calls made (for statistics and tests)

    async def submit(self, item: T) -> R:
        """Commit ``item`` with whatever else is waiting; its result, or its exception."""
        job: _Job[T, R] = _Job(item)
        self._waiting.append(job)
        try:
            if self._leaders < self._wanted():
                await self._lead()
            while job.result is None:
                await job.wake.wait()
                if job.result is None:  # asked to lead the next batch
                    job.wake = trio.Event()
                    await self._lead()
        except BaseException:
            if job.result is None and job in self._waiting:
                self._waiting.remove(job)  # never committed: the caller gets no success
                self._hand_over()
            raise
        return job.result.unwrap()

    def _wanted(self) -> int:
        """How many batches should be in flight for the waiting items."""
        backlog = len(self._waiting) * self._per_item
        return max(1, min(self._max_parallel, math.ceil(backlog / TARGET_LATENCY)))

    async def _lead(self) -> None:
        self._leaders += 1
        try:
            if not self._waiting:
                return  # another leader took this job's batch already
            share = math.ceil(len(self._waiting) / self._wanted())
            batch = [self._waiting.popleft() for _ in range(share)]
            self._hand_over()  # a slow disk wants more batches in flight
            start = trio.current_time()
            try:
                outcomes = await self._run(self._commit, [job.item for job in batch])
            except trio.Cancelled:
                # Cancelled before the thread started (it is never abandoned once running):
                # nothing of the batch was committed; it waits for the next leader.
                self._waiting.extendleft(reversed(batch))
                raise
            except Exception as exc:  # a bug in ``commit``: every item of the batch fails with it
                outcomes = [outcome.Error(exc) for _ in batch]
            elapsed = trio.current_time() - start
            self._per_item += _SMOOTHING * (elapsed / len(batch) - self._per_item)
            self.batches += 1
            for job, result in zip(batch, outcomes, strict=True):
                job.result = result
                job.wake.set()
        finally:
            self._leaders -= 1
            self._hand_over()

    def _hand_over(self) -> None:
        """Wake the oldest waiting item to lead if fewer batches are in flight than wanted."""
        if self._waiting and self._leaders < self._wanted():
            self._waiting[0].wake.set()
