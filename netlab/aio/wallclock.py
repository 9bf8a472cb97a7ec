"""Wall-clock time for protocol logic that needs it, advancing with trio's clock.

HTTP dates, cache ages and access-log timestamps are seconds since the epoch, but drivers read
the clock only through ``trio.current_time()`` so that ``MockClock`` controls every timeout in
tests.  A :class:`WallClock` reconciles the two: it notes the epoch time once, when it is made,
and from then on moves with trio's clock, so virtual time in a test also moves HTTP time.
"""

from __future__ import annotations

import time

import trio

__all__ = ["WallClock"]


class WallClock:
    """Seconds since the epoch, as trio's clock sees them pass.  Create inside ``trio.run``.

    Args:
        epoch: what "now" is at creation; the system's time unless a test fixes it.
    """

    def __init__(self, epoch: float | None = None) -> None:
        self._offset = (time.time() if epoch is None else epoch) - trio.current_time()

    def now(self) -> float:
        return self._offset + trio.current_time()
