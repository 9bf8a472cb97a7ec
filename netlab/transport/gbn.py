"""Go-Back-N and stop-and-wait.

Strategy (Kurose & Ross section 3.4.3; the cumulative acknowledgement of RFC 9293 section 3.4):

* the receiver accepts only the next segment in order and answers every segment with a cumulative
  ACK (the next number it expects); it buffers nothing, so anything out of order is discarded and
  the re-sent ACK doubles as a duplicate ACK;
* the sender runs one timer, on the oldest unacknowledged segment; when it fires, the whole window
  goes again ("go back N");
* three duplicate ACKs mean the segment after the acknowledged one was lost while later ones
  arrived, so the sender goes back N at once instead of waiting for the timer (RFC 5681 section
  3.2's fast retransmit, applied to a receiver that kept none of the later segments).  The copies
  sent before going back can cause at most one duplicate each, so if the duplicates run past that
  count plus three, the resent oldest segment was lost too and the sender goes back again (the
  role of NewReno's "recover" point, RFC 6582).

Stop-and-wait is Go-Back-N with a window of one; it never sees duplicate ACKs while data is in
flight, so it recovers by the timer alone.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from netlab.transport.policy import (
    DUP_ACK_THRESHOLD,
    Ack,
    AckOutcome,
    Receipt,
    RetransmitPolicy,
    register_policy,
)
from netlab.transport.window import ReceiveWindow, SendWindow, WindowRule

__all__ = ["GoBackN", "StopAndWait"]

T = TypeVar("T")


class GoBackN(RetransmitPolicy):
    name: ClassVar[str] = "gbn"
    rule: ClassVar[WindowRule] = WindowRule.CUMULATIVE

    def __init__(self) -> None:
        super().__init__()
        self._deadline: float | None = None  # the one timer, on the oldest unacked segment
        self._trigger_at = DUP_ACK_THRESHOLD  # the duplicate count that calls for going back

    def on_sent(self, window: SendWindow[T], seq: int, *, now: float, rto: float) -> None:
        # The timer covers the oldest segment: start it only if nothing else was in flight.
        if self._deadline is None:
            self._deadline = now + rto

    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float, rto: float) -> AckOutcome[T]:
        outcome: AckOutcome[T] = AckOutcome()
        base_before = window.base
        if ack.cumulative > base_before:
            outcome.acked = window.ack_through(ack.cumulative)
            # A new cumulative value is sent exactly when segment cumulative-1 arrives in order.
            outcome.sample = outcome.acked[-1] if outcome.acked else None
            # Restart the timer for the new oldest segment (RFC 6298 section 5.3), or stop it.
            self._deadline = now + rto if window.in_flight else None
        outcome.duplicate = self._is_duplicate(window, ack, base_before)
        if window.base != base_before:
            self._trigger_at = DUP_ACK_THRESHOLD
        elif outcome.duplicate and self._dup_acks == self._trigger_at:
            outcome.retransmit = list(window.pending())
            self._went_back(window)
            self._deadline = now + rto
        return outcome

    def _went_back(self, window: SendWindow[T]) -> None:
        # Each copy in flight before going back may still cause one duplicate.
        self._trigger_at = self._dup_acks + window.in_flight + DUP_ACK_THRESHOLD

    def next_deadline(self) -> float | None:
        return self._deadline

    def expired(self, window: SendWindow[T], *, now: float, rto: float) -> list[int]:
        if self._deadline is None or now < self._deadline:
            return []
        # The engine re-arms the timer through on_sent, with the backed-off RTO.
        self._deadline = None
        self._went_back(window)
        return list(window.pending())

    def clear_timers(self) -> None:
        self._deadline = None

    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        space = window.space
        ahead = space.distance(space.wrap(window.base), wire_seq)
        if ahead == 0:
            return Receipt(deliver=window.accept(window.base, item), ack=True)
        # Out of order: a later segment (one before it was lost) or an old one (our ACK was
        # lost).  Either way discard it and repeat the cumulative ACK.  Only a number more than a
        # window away on both sides cannot belong to this connection.
        behind = space.size - ahead
        expected = ahead <= window.size or behind <= window.size
        return Receipt(ack=expected, expected=expected)


class StopAndWait(GoBackN):
    """Go-Back-N with a window of one (the engine forces N = 1)."""

    name: ClassVar[str] = "saw"


register_policy(GoBackN.name, GoBackN)
register_policy(StopAndWait.name, StopAndWait)
