"""Many timers in one structure: a heap of deadlines with lazy deletion.

Strategy: a protocol with a timer per outstanding packet (Selective Repeat, a windowed TFTP
sender) must still give its driver a single ``get_timer()``.  Each key has at most one live
deadline, kept in a dict; the heap may also hold stale entries (cancelled or rescheduled).  They
are discarded when they reach the top, so scheduling and cancelling are O(log n) and O(1), and the
earliest deadline is found in amortised O(log n).  The heap is rebuilt when stale entries
outnumber live ones, so it never grows without bound.  Keys are any hashable, orderable values
(sequence numbers, block numbers): nothing here knows a packet format.
"""

from __future__ import annotations

import heapq
from typing import Generic, Protocol, Self, TypeVar

__all__ = ["DeadlineHeap"]


class _Orderable(Protocol):
    def __lt__(self, other: Self, /) -> bool: ...


K = TypeVar("K", bound=_Orderable)

_COMPACT_SLACK = 64  # stale entries tolerated before a rebuild is considered


class DeadlineHeap(Generic[K]):
    """Absolute deadlines (seconds) keyed by ``K``; at most one per key."""

    def __init__(self) -> None:
        self._live: dict[K, float] = {}
        self._heap: list[tuple[float, K]] = []

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: K) -> bool:
        return key in self._live

    def schedule(self, key: K, deadline: float) -> None:
        """Set (or move) the deadline of ``key``."""
        self._live[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            self._heap = [(when, k) for k, when in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (no error if it has none)."""
        self._live.pop(key, None)

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()

    def earliest(self) -> float | None:
        """The soonest live deadline, or ``None``."""
        heap, live = self._heap, self._live
        while heap:
            when, key = heap[0]
            if live.get(key) == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_expired(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is at or before ``now``, soonest first."""
        expired = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if live.get(key) == when:
                del live[key]
                expired.append(key)
        return expired
