"""Go-Back-N and stop-and-wait.

Strategy (Kurose & Ross section 3.4.3; the cumulative acknowledgement of RFC 9293 section 3.4):

* the receiver accepts only the next segment in order and answers every segment with a cumulative
  ACK (the next number it expects); it buffers nothing, so anything out of order is discarded and
  the re-sent ACK doubles as a duplicate ACK.  A duplicate also names the segment that caused it
  (``FLAG_SELECTIVE`` with its number in ``seq``), as HDLC's REJ names the frame expected: it
  reports an arrival, it acknowledges nothing;
* the sender runs one timer, on the oldest unacknowledged segment; when it fires, the whole window
  goes again ("go back N");
* long before that, a duplicate shows that a segment sent after the oldest one arrived, so over
  a path that keeps order the oldest one was lost (RACK, RFC 8985 section 6, without SACK).  The
  sender goes back N on the third such duplicate (RFC 5681 section 3.2's fast retransmit,
  applied to a receiver that kept none of the later segments), or once a reordering window of a
  quarter of the minimum RTT has passed since the first (section 6.2 step 4): with N = 4 and one
  more loss in the window, three duplicates never come, and only the timer would be left.  While
  a go-back is being repaired and the path has shown no reordering, the first duplicate is
  enough (the window is zero in recovery, step 4 again): a lost repair is found a round trip
  later.  The path has shown reordering when a copy taken for lost arrives after all, or when the
  oldest segment's ACK comes back sooner than any round trip after its retransmission;
* only a duplicate from a copy sent *after* the oldest segment's latest transmission counts.
  Copies sent before a go-back may still be on their way and cause duplicates that say nothing
  of the resent oldest segment, so each report is credited to the earliest copy of its number
  not yet accounted for: a path that keeps order delivers copies in the order they were sent,
  so every copy sent before that one and not yet accounted for was lost.  After a timeout the
  old copies are long gone (the RTO is longer than a round trip), so only new ones are counted.

Stop-and-wait is Go-Back-N with a window of one; it never sees duplicate ACKs while data is in
flight, so it recovers by the timer alone.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar, TypeVar

from netlab.transport.policy import (
    DUP_ACK_THRESHOLD,
    Ack,
    AckOutcome,
    Expiry,
    Receipt,
    RetransmitPolicy,
    register_policy,
)
from netlab.transport.rto import RtoEstimator
from netlab.transport.window import ReceiveWindow, SendWindow, WindowRule

__all__ = ["GoBackN", "StopAndWait"]

T = TypeVar("T")


class GoBackN(RetransmitPolicy):
    name: ClassVar[str] = "gbn"
    rule: ClassVar[WindowRule] = WindowRule.CUMULATIVE

    def __init__(self, rtt: RtoEstimator | None = None) -> None:
        super().__init__(rtt)
        self._deadline: float | None = None  # the one timer, on the oldest unacked segment
        # Every transmission not yet accounted for, oldest first, as (order, number); how many
        # each number has among them; and the order of each number's latest transmission.
        self._sent: deque[tuple[int, int]] = deque()
        self._unaccounted: dict[int, int] = {}
        self._latest: dict[int, int] = {}
        self._order = 0
        self._evidence = 0  # duplicates from copies sent after the oldest segment's latest copy
        self._loss_deadline: float | None = None  # the reordering window after the first one
        self._reordering_seen = False
        self._recover: int | None = None  # ``next`` at the latest go-back, until acknowledged

    def on_sent(self, window: SendWindow[T], seq: int, *, now: float) -> None:
        self._order += 1
        self._sent.append((self._order, seq))
        self._unaccounted[seq] = self._unaccounted.get(seq, 0) + 1
        self._latest[seq] = self._order
        if seq == window.base:
            self._evidence, self._loss_deadline = 0, None  # a new copy of the oldest: start again
        # The timer covers the oldest segment: start it only if nothing else was in flight.
        if self._deadline is None:
            self._deadline = now + self._rtt.rto

    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float) -> AckOutcome[T]:
        outcome: AckOutcome[T] = AckOutcome()
        base_before = window.base
        if ack.cumulative > base_before:
            outcome.acked = window.ack_through(ack.cumulative)
            for seq in range(base_before, window.base):
                self._unaccounted.pop(seq, None)
                self._latest.pop(seq, None)
            self._evidence, self._loss_deadline = 0, None
            if self._recover is not None and window.base >= self._recover:
                self._recover = None  # every segment of the go-back is acknowledged
            # A new cumulative value is sent exactly when segment cumulative-1 arrives in order.
            last = outcome.sample = outcome.acked[-1] if outcome.acked else None
            if last is not None:
                rtt = now - last.sent_at
                if not last.retransmitted:
                    self._min_rtt = min(self._min_rtt, rtt)
                elif rtt + self._rtt.granularity < self._min_rtt < math.inf:
                    # Sooner than any round trip: the original arrived after all, late (RFC 8985
                    # section 6.2 step 4, with this test standing in for DSACK).
                    self._reordering_seen = True
            # Restart the timer for the new oldest segment (RFC 6298 section 5.3), or stop it.
            self._deadline = now + self._rtt.rto if window.in_flight else None
        outcome.duplicate = self._is_duplicate(window, ack, base_before)
        if outcome.duplicate and ack.selective is not None and self._after_oldest(window, ack.selective):
            self._evidence += 1
            if self._evidence >= DUP_ACK_THRESHOLD:
                outcome.retransmit = self._go_back(window, now)
            elif not self._reordering_seen and self._recover is not None:
                outcome.retransmit = self._go_back(window, now)  # a lost repair: no need to wait
            elif self._loss_deadline is None:
                self._loss_deadline = now + self._known_min_rtt() / 4
        return outcome

    def _after_oldest(self, window: SendWindow[T], seq: int) -> bool:
        """Credit a duplicate caused by ``seq`` to its earliest unaccounted copy: was that copy
        sent after the latest copy of the oldest segment?

        Every copy sent before the credited one and still unaccounted for did not arrive (the
        path keeps order): it is dropped from the books, so that its number's next report is
        credited to a copy that can have caused it.
        """
        unaccounted, sent = self._unaccounted, self._sent
        if seq <= window.base:
            return False
        if not unaccounted.get(seq):
            # A copy we took for lost arrived after all (or the path duplicated one): the path
            # does not keep order, so from now on wait a reordering window before going back.
            self._reordering_seen = True
            return False
        while True:
            order, number = sent.popleft()
            count = unaccounted.get(number)
            if count is None:
                continue  # acknowledged since
            if count == 1:
                del unaccounted[number]
            else:
                unaccounted[number] = count - 1
            if number == seq:
                return order > self._latest.get(window.base, self._order)

    def _go_back(self, window: SendWindow[T], now: float) -> list[int]:
        self._evidence, self._loss_deadline = 0, None
        self._recover = window.next
        self._deadline = now + self._rtt.rto
        return list(window.pending())

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._deadline, self._loss_deadline) if d is not None]
        return min(deadlines, default=None)

    def expired(self, window: SendWindow[T], *, now: float) -> Expiry:
        if self._loss_deadline is not None and now >= self._loss_deadline:
            return Expiry(lost=self._go_back(window, now))  # the reordering window passed
        if self._deadline is None or now < self._deadline:
            return Expiry()
        # The engine re-arms the timer through on_sent, with the backed-off RTO.  The copies in
        # flight before the timeout are gone by now: count only the ones sent from here on.
        self._deadline = None
        self._forget_copies()
        self._evidence, self._loss_deadline = 0, None
        self._recover = window.next
        return Expiry(timed_out=list(window.pending()))

    def _forget_copies(self) -> None:
        self._sent.clear()
        self._unaccounted.clear()

    def clear_timers(self) -> None:
        self._deadline = self._loss_deadline = None
        self._forget_copies()
        self._latest.clear()

    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        space = window.space
        ahead = space.distance(space.wrap(window.base), wire_seq)
        if ahead == 0:
            return Receipt(deliver=window.accept(window.base, item), ack=True)
        # Out of order: a later segment (one before it was lost) or an old one (our ACK was
        # lost).  Either way discard it and repeat the cumulative ACK.  Only a number more than a
        # window away on both sides cannot belong to this connection.
        behind = space.size - ahead
        if ahead <= window.size:  # a later one: name it, so the sender knows what arrived
            return Receipt(ack=True, selective=window.base + ahead)
        expected = behind <= window.size
        return Receipt(ack=expected, expected=expected)


class StopAndWait(GoBackN):
    """Go-Back-N with a window of one (the engine forces N = 1)."""

    name: ClassVar[str] = "saw"


register_policy(GoBackN.name, GoBackN)
register_policy(StopAndWait.name, StopAndWait)
