"""Selective Repeat, with time-based loss detection (RACK) and a tail-loss probe (TLP).

Strategy (Kurose & Ross section 3.4.4; RFC 8985 for when to presume a loss):

* the receiver acknowledges every segment individually (``FLAG_SELECTIVE``, the segment's number
  in ``seq``) and buffers those that arrive out of order within its window ``[base, base + W)``;
  a segment from the window before (``[base - W, base)``) is one whose ACK was lost, so it is
  acknowledged again; anything else cannot be ours and is dropped.  Each ACK also carries the
  cumulative number (``ack``), which repairs lost individual ACKs.  W is what the receive buffer
  holds (at least N, at most 2**(k-1)); the sender keeps N segments *outstanding* and never runs
  past the window the receiver advertises, so while a hole waits for its repair the segments
  acknowledged beyond it make room for new ones (``window.SendWindow``);
* the sender keeps one retransmission timer per outstanding segment, all in one ``DeadlineHeap``
  (lazy deletion), and resends only the segment whose timer fired.  As RFC 6298 section 5.3 does
  for TCP's single timer, an acknowledgement of new data restarts the clock: a timer that
  expires less than an RTO after the latest such acknowledgement is pushed back to that point
  instead of firing (lazily, when it comes due), so segments waiting in a long bottleneck queue
  behind a flowing stream of ACKs are not resent spuriously;
* long before that timer, a segment is presumed lost when a segment *sent after it* has been
  acknowledged and a reordering window has passed since (RACK, RFC 8985 section 6).  The rule
  compares transmission times, not numbers, so a retransmission that is lost again is caught the
  same way, a round trip later, instead of by the timer.  The reordering window is a quarter of
  the minimum RTT (section 6.2 step 4), zero once three later segments are acknowledged while no
  reordering has been seen (the classic three-duplicates rule as a special case), and it widens
  by a quarter of the minimum RTT, up to SRTT, each round trip in which a retransmission proves
  spurious: its acknowledgement came back sooner than any round trip could, so the original had
  arrived (section 6.2 steps 2 and 4, with that test standing in for DSACK).  Only a segment's
  own ACK times it; one reported late by a cumulative ACK (its own was lost) says nothing about
  when it arrived.  Segments wait in a deque in transmission order, so each acknowledgement
  examines only the oldest few: amortised O(1);
* when data is in flight and no acknowledgement has come for two SRTTs (or an RTO, if that is
  sooner), the newest outstanding segment is sent again as a probe (TLP, RFC 8985 section 7), so
  that a loss at the tail, or a lost retransmission with nothing sent after it, draws an
  acknowledgement and RACK repairs it without an RTO.  A probe takes the place of the timeouts
  due at the same moment, which wait one more RTO (section 7.3 re-arms the RTO after a probe);
  it neither backs the RTO off nor counts as a retry.  One probe at a time, until an
  acknowledgement of new data; then the timers take over.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar, TypeVar

from netlab.transport.deadlines import DeadlineHeap
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
from netlab.transport.window import InFlight, ReceiveWindow, SendWindow, WindowRule

__all__ = ["SelectiveRepeat"]

T = TypeVar("T")

#: Loss recoveries after which a reordering window widened by spurious retransmissions is reset
#: (RFC 8985 section 6.2 step 4).
REO_WND_PERSIST = 16


class SelectiveRepeat(RetransmitPolicy):
    name: ClassVar[str] = "sr"
    rule: ClassVar[WindowRule] = WindowRule.SELECTIVE

    def __init__(self, rtt: RtoEstimator | None = None) -> None:
        super().__init__(rtt)
        self._timers: DeadlineHeap[int] = DeadlineHeap()  # retransmission timeouts
        self._progress_at = -math.inf  # when new data was last acknowledged
        # Every transmission, oldest first, as (transmission order, number); an entry is stale
        # once its number is acknowledged or sent again (``_latest`` no longer names it).
        self._sent: deque[tuple[int, int]] = deque()
        self._latest: dict[int, int] = {}  # number -> order of its latest transmission
        self._order = 0
        # RACK (RFC 8985 section 6.1): the latest-sent segment known delivered, and its RTT.
        self._rack_order = -1
        self._rack_rtt = 0.0
        self._highest_delivered = -1  # number, for noticing reordering
        self._reordering_seen = False
        self._reo_mult = 1
        self._reo_persist = 0
        self._spurious_until = -math.inf  # one widening per round trip
        self._reorder_deadline: float | None = None
        # TLP (RFC 8985 section 7): when to probe, and whether a probe is unanswered.
        self._probe_deadline: float | None = None
        self._probe_out = False

    # -- sending ---------------------------------------------------------------------------------

    def on_sent(self, window: SendWindow[T], seq: int, *, now: float) -> None:
        rtt = self._rtt
        self._timers.schedule(seq, now + rtt.rto)
        order = self._order
        self._order = order + 1
        self._sent.append((order, seq))
        self._latest[seq] = order
        entry = window.get(seq)
        # Section 7.2: (re)start the probe timer after sending new data.
        if entry is not None and not entry.retransmitted and not self._probe_out:
            self._arm_probe(now)

    def _arm_probe(self, now: float) -> None:
        # PTO = 2 SRTT (section 7.2; our receivers never delay ACKs), at least the clock
        # granularity, and never later than the retransmission timeout would come.
        rtt = self._rtt
        pto = rtt.rto if rtt.srtt is None else min(max(2 * rtt.srtt, rtt.granularity), rtt.rto)
        self._probe_deadline = now + pto

    # -- acknowledgements ------------------------------------------------------------------------

    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float) -> AckOutcome[T]:
        outcome: AckOutcome[T] = AckOutcome()
        base_before = window.base
        if ack.selective is not None:
            entry = window.ack_one(ack.selective)
            if entry is not None:
                outcome.acked.append(entry)
                outcome.sample = entry  # this ACK was sent for exactly this segment
                self._delivered(ack.selective, entry, now, selective=True)
        if ack.cumulative > window.base:
            for seq in range(window.base, min(ack.cumulative, window.next)):
                entry = window.get(seq)
                if entry is not None and not entry.acked:
                    self._delivered(seq, entry, now, selective=False)
            outcome.acked += window.ack_through(ack.cumulative)
        outcome.duplicate = self._is_duplicate(window, ack, base_before)
        if outcome.acked:
            self._progress_at = now
            self._probe_out = False
            if window.in_flight:
                self._arm_probe(now)
            else:
                self._probe_deadline = None
            outcome.retransmit = self._detect_loss(window, now)
        return outcome

    def _delivered(self, seq: int, entry: InFlight[T], now: float, *, selective: bool) -> None:
        """RFC 8985 section 6.2 steps 1-3 for one newly acknowledged segment."""
        self._timers.cancel(seq)
        order = self._latest.pop(seq, -1)
        if not selective:
            # Its own ACK was lost and a later cumulative one reports it: when it arrived is
            # unknown, and taking now as the time would stretch RACK's RTT and delay every
            # detection after it.  (TCP's SACK repeats blocks across ACKs; ours does not.)
            return
        rtt = now - entry.sent_at
        if entry.retransmitted and rtt + self._rtt.granularity < self._known_min_rtt():
            # Measurably sooner than any round trip, so not the answer to the retransmission: the
            # original arrived after all, the retransmission was spurious and the reordering
            # window too tight (step 4).  (A repair sent into an empty queue comes back in just
            # the minimum RTT; the margin keeps rounding from calling that spurious.)
            if now >= self._spurious_until:
                self._reo_mult += 1
                self._reo_persist = REO_WND_PERSIST
                self._spurious_until = now + (self._rtt.srtt or 0.0)
            self._reordering_seen = True
            return
        if not entry.retransmitted:
            self._min_rtt = min(self._min_rtt, rtt)
            if seq < self._highest_delivered:
                self._reordering_seen = True  # sent once, and overtaken by a later number (step 3)
        self._highest_delivered = max(self._highest_delivered, seq)
        if order > self._rack_order:
            self._rack_order, self._rack_rtt = order, rtt

    def _reo_wnd(self, window: SendWindow[T]) -> float:
        """The reordering window (RFC 8985 section 6.2 step 4)."""
        if not self._reordering_seen and window.selectively_acked >= DUP_ACK_THRESHOLD:
            return 0.0
        rtt = self._rtt
        reo = self._reo_mult * self._known_min_rtt() / 4
        if rtt.srtt is not None:
            reo = min(reo, rtt.srtt)
        # Nothing shorter than the clock granularity can be told apart from no window at all.
        return max(reo, rtt.granularity)

    def _detect_loss(self, window: SendWindow[T], now: float) -> list[int]:
        """Numbers sent before the latest delivered one whose reordering window has passed.

        The deque is in transmission order, so the scan stops at the first segment that is not
        yet overdue (every later one is due later still) and arms the reordering timer for it.
        """
        lost: list[int] = []
        sent, latest = self._sent, self._latest
        rack_order = self._rack_order
        limit = self._rack_rtt + self._reo_wnd(window)
        self._reorder_deadline = None
        while sent:
            order, seq = sent[0]
            if latest.get(seq) != order:
                sent.popleft()  # acknowledged, or sent again since
                continue
            if order > rack_order:
                break  # sent after every segment known delivered: nothing to infer yet
            entry = window.get(seq)
            if entry is None or entry.acked:
                sent.popleft()
                continue
            due = entry.sent_at + limit
            if due > now:
                self._reorder_deadline = due
                break
            sent.popleft()  # its retransmission will enter the deque again
            lost.append(seq)
        if lost and self._reo_persist:
            self._reo_persist -= 1
            if not self._reo_persist:
                self._reo_mult = 1
        return lost

    # -- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        best = self._timers.earliest()
        for deadline in (self._reorder_deadline, self._probe_deadline):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def expired(self, window: SendWindow[T], *, now: float) -> Expiry:
        expiry = Expiry()
        rto = self._rtt.rto
        restart = self._progress_at + rto
        for seq in self._timers.pop_expired(now):
            entry = window.get(seq)
            if entry is None or entry.acked:
                continue
            if restart > now:
                self._timers.schedule(seq, restart)  # acknowledgements are still flowing
            else:
                expiry.timed_out.append(seq)
        if self._reorder_deadline is not None and now >= self._reorder_deadline:
            timed_out = set(expiry.timed_out)
            expiry.lost = [seq for seq in self._detect_loss(window, now) if seq not in timed_out]
        if self._probe_deadline is not None and now >= self._probe_deadline:
            self._probe_deadline = None
            if expiry.lost:
                self._arm_probe(now)  # still wanted, should those retransmissions be lost too
            elif (probe := window.newest_pending()) is not None:
                for seq in expiry.timed_out:  # the probe goes first; they wait another RTO
                    self._timers.schedule(seq, now + rto)
                expiry.timed_out = []
                expiry.probe, self._probe_out = probe, True
        return expiry

    def clear_timers(self) -> None:
        self._timers.clear()
        self._sent.clear()
        self._latest.clear()
        self._reorder_deadline = self._probe_deadline = None

    # -- receiving -------------------------------------------------------------------------------

    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        seq = window.unwrap(wire_seq)  # in [base - N, base - N + 2**k)
        if seq < window.base:
            return Receipt(ack=True, selective=seq)  # already delivered: our ACK was lost
        if seq >= window.base + window.size:
            return Receipt(expected=False)
        return Receipt(deliver=window.accept(seq, item), ack=True, selective=seq)


register_policy(SelectiveRepeat.name, SelectiveRepeat)
