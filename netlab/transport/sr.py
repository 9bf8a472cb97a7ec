"""Selective Repeat.

Strategy (Kurose & Ross section 3.4.4):

* the receiver acknowledges every segment individually (``FLAG_SELECTIVE``, the segment's number
  in ``seq``) and buffers those that arrive out of order within its window ``[base, base + N)``;
  a segment from the window before (``[base - N, base)``) is one whose ACK was lost, so it is
  acknowledged again; anything else cannot be ours and is dropped.  Each ACK also carries the
  cumulative number (``ack``), which repairs lost individual ACKs and exposes a missing segment;
* the sender keeps one timer per outstanding segment, all in one ``DeadlineHeap`` (lazy
  deletion), and resends only the segment whose timer fired;
* a segment is presumed lost, and resent at once, when a segment sent after it and at least three
  numbers beyond it is acknowledged: the selective form of "three duplicate ACKs" (RFC 5681
  section 3.2, and the loss rule of RFC 6675 section 4).  Every hole in a window is repaired within
  about a round trip, not only the oldest one.  Each number is examined once, when the
  acknowledgements first pass it; a resent segment is presumed lost again once three segments
  sent after it are acknowledged.  The timers remain the last resort.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from netlab.transport.deadlines import DeadlineHeap
from netlab.transport.policy import (
    DUP_ACK_THRESHOLD,
    Ack,
    AckOutcome,
    Receipt,
    RetransmitPolicy,
    register_policy,
)
from netlab.transport.window import ReceiveWindow, SendWindow, WindowRule

__all__ = ["SelectiveRepeat"]

T = TypeVar("T")


class SelectiveRepeat(RetransmitPolicy):
    name: ClassVar[str] = "sr"
    rule: ClassVar[WindowRule] = WindowRule.SELECTIVE

    def __init__(self) -> None:
        super().__init__()
        self._timers: DeadlineHeap[int] = DeadlineHeap()
        self._scanned = 0  # numbers below this were already examined for presumed loss
        #: Resent numbers -> how many segments sent after that resend were acknowledged since.
        self._resent: dict[int, int] = {}

    def on_sent(self, window: SendWindow[T], seq: int, *, now: float, rto: float) -> None:
        self._timers.schedule(seq, now + rto)
        entry = window.get(seq)
        if entry is not None and entry.retransmitted:
            self._resent[seq] = 0

    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float, rto: float) -> AckOutcome[T]:
        outcome: AckOutcome[T] = AckOutcome()
        base_before = window.base
        newest: tuple[int, float] | None = None  # (number, send time) of a segment just acked
        if ack.selective is not None:
            entry = window.ack_one(ack.selective)
            if entry is not None:
                self._timers.cancel(ack.selective)
                outcome.acked.append(entry)
                outcome.sample = entry  # this ACK was sent for exactly this segment
                newest = (ack.selective, entry.sent_at)
        if ack.cumulative > window.base:
            start = window.base
            outcome.acked += window.ack_through(ack.cumulative)
            for seq in range(start, window.base):
                self._timers.cancel(seq)
        outcome.duplicate = self._is_duplicate(window, ack, base_before)
        if newest is not None:
            outcome.retransmit = self._presumed_lost(window, *newest) + self._lost_again(window, newest[1])
        return outcome

    def _presumed_lost(self, window: SendWindow[T], acked: int, acked_sent_at: float) -> list[int]:
        """Unacknowledged numbers sent before ``acked`` and at least DUP_ACK_THRESHOLD below it."""
        last = acked - DUP_ACK_THRESHOLD
        lost = []
        for seq in range(max(self._scanned, window.base), last + 1):
            entry = window.get(seq)
            if entry is not None and not entry.acked and entry.sent_at <= acked_sent_at:
                lost.append(seq)
        self._scanned = max(self._scanned, last + 1)
        return lost

    def _lost_again(self, window: SendWindow[T], acked_sent_at: float) -> list[int]:
        """Resent numbers overtaken by DUP_ACK_THRESHOLD acknowledged segments sent after them."""
        lost = []
        for seq, count in list(self._resent.items()):
            entry = window.get(seq)
            if entry is None or entry.acked:
                del self._resent[seq]
            elif entry.sent_at < acked_sent_at:
                self._resent[seq] = count + 1
                if count + 1 >= DUP_ACK_THRESHOLD:
                    lost.append(seq)
        return lost

    def next_deadline(self) -> float | None:
        return self._timers.earliest()

    def expired(self, window: SendWindow[T], *, now: float, rto: float) -> list[int]:
        due = []
        for seq in self._timers.pop_expired(now):
            entry = window.get(seq)
            if entry is not None and not entry.acked:
                due.append(seq)
        return due

    def clear_timers(self) -> None:
        self._timers.clear()
        self._resent.clear()

    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        seq = window.unwrap(wire_seq)  # in [base - N, base - N + 2**k)
        if seq < window.base:
            return Receipt(ack=True, selective=seq)  # already delivered: our ACK was lost
        if seq >= window.base + window.size:
            return Receipt(expected=False)
        return Receipt(deliver=window.accept(seq, item), ack=True, selective=seq)


register_policy(SelectiveRepeat.name, SelectiveRepeat)
