"""A memory budget shared by the importer's worker processes.

One decode of a 64-megapixel file can take over a gigabyte at its peak, and every worker may be
decoding such a file at once. Each decode therefore reserves its estimated peak (from the file's
header, before any pixels are read) and returns it when done; a reservation that does not fit
waits. Admission is first come, first served, so a big file is not starved by a stream of small
ones, and a file larger than the whole budget is admitted alone, so nothing waits forever.
Together: the decodes in flight never hold more than max(limit, the largest single file).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class MemoryBudget:
    """Bytes that concurrent decodes may hold at once; picklable to spawned workers."""

    def __init__(self, limit: int, context):
        self.limit = limit
        self._cond = context.Condition()
        # Raw shared integers, guarded by the condition's lock.
        self._in_use = context.RawValue("q", 0)
        self._peak = context.RawValue("q", 0)
        self._admitted = context.RawValue("q", 0)
        self._next_ticket = context.RawValue("q", 0)
        self._serving = context.RawValue("q", 0)

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at one time."""
        with self._cond:
            return self._peak.value

    @property
    def admitted(self) -> int:
        """How many reservations were granted."""
        with self._cond:
            return self._admitted.value

    def _fits(self, cost: int) -> bool:
        return self._in_use.value == 0 or self._in_use.value + cost <= self.limit

    def _take(self, cost: int) -> None:
        self._in_use.value += cost
        self._peak.value = max(self._peak.value, self._in_use.value)
        self._admitted.value += 1

    def try_reserve(self, cost: int) -> bool:
        """Reserve without waiting when nobody is queued and the cost fits; False otherwise."""
        with self._cond:
            if self._serving.value != self._next_ticket.value or not self._fits(cost):
                return False
            self._take(cost)
            return True

    def release(self, cost: int) -> None:
        with self._cond:
            self._in_use.value -= cost
            self._cond.notify_all()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        """Hold `cost` bytes of the budget for the duration of the block, waiting for them."""
        with self._cond:
            ticket = self._next_ticket.value
            self._next_ticket.value += 1
            self._cond.wait_for(lambda: self._serving.value == ticket and self._fits(cost))
            self._serving.value += 1
            self._take(cost)
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            self.release(cost)
