"""The sending half of the data path: segmentation, acknowledgements, retransmission, persist.

Strategy:

* the application's bytes wait in one ``bytearray`` with a read offset and are cut into segments
  of at most ``mss`` bytes only when both windows have room, so they are copied once, into each
  datagram; every sent segment is kept encoded, so a retransmission costs nothing;
* an acknowledgement goes to the policy (``RetransmitPolicy.on_ack``), which says what it newly
  acknowledged, whether it gives an RTT sample (Karn's rule, RFC 6298 section 3) and what is now
  presumed lost;
* loss recovery as the policy decides it: a retransmission timeout backs the RTO off and counts
  towards the retry limit; a loss inferred from acknowledgements (duplicate ACKs, RACK) and a
  tail-loss probe are sent at once and do neither.  A FIN takes a sequence number and travels
  through the window like data, so the same machinery retransmits it;
* flow control, sender's side: never a number at or past the edge of the window the peer last
  advertised (in segments, counted from its cumulative ACK).  When that window is closed and
  nothing is in flight, a persist timer with exponential backoff sends a zero-window probe (RFC
  9293 section 3.8.6.1): an empty DATA segment numbered just below our base.  It carries no new
  data and takes no sequence number, so nothing can slip past the window, yet any receiver
  answers it with an ACK of its current window (section 3.10.7.4).  Answers keep the connection
  open however long the window stays shut (MUST-37); ``max_retries`` probes in a row without any
  answer end it.

``Sender`` sits between ``receiver.Receiver`` and ``engine.Connection`` in the class chain.
"""

from __future__ import annotations

import logging
import random

from netlab.transport.handshake import Role
from netlab.transport.params import TransportParams
from netlab.transport.policy import Ack
from netlab.transport.receiver import Receiver
from netlab.transport.segment import FLAG_SELECTIVE, HEADER_SIZE, Segment, SegmentType, _encode
from netlab.transport.states import ConnState, Trigger

__all__ = ["Sender"]

log = logging.getLogger(__name__)

_COMPACT_AT = 1 << 20  # bytes consumed from the send buffer before it is compacted

DATA, FIN = SegmentType.DATA, SegmentType.FIN
S = ConnState
_AWAITING_FIN_ACK = frozenset({S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})


class Sender(Receiver):
    """Handshake, receive path and send path; ``engine.Connection`` adds the API and timers."""

    def __init__(self, params: TransportParams, *, role: Role, rng: random.Random, now: float) -> None:
        super().__init__(params, role=role, rng=rng, now=now)
        self._sndbuf = bytearray()  # application bytes not yet cut into segments ...
        self._sndoff = 0  # ... starting at this offset
        self._unacked_bytes = 0  # payload bytes sent and not yet acknowledged
        self._eof_requested = False
        self._fin_seq: int | None = None  # absolute number of our FIN once sent
        self._persist_deadline: float | None = None
        self._persist_backoff = 0
        self._window_probes = 0  # zero-window probes sent since the peer last answered

    # -- sending ---------------------------------------------------------------------------------

    def _fill(self, out: list[bytes], now: float) -> None:
        """Cut queued bytes into segments while the send window and the peer's window allow."""
        snd, policy, space = self._snd, self._policy, self._space
        mss = self._mss
        ack_wire = space.wrap(self._rcv.base)
        window = self._receive_window()
        edge = self._peer_ack + self._peer_window
        buf, off = self._sndbuf, self._sndoff
        end, first = len(buf), snd.next
        with memoryview(buf) as view:
            while not snd.full:
                if off < end:
                    if snd.next >= edge:
                        break  # the peer's window is full; the persist timer probes it
                    n = min(mss, end - off)
                    datagram = _encode(DATA, 0, space.wrap(snd.next), ack_wire, window, view[off : off + n])
                    off += n
                    self._unacked_bytes += n
                    self.stats.bytes_sent += n
                elif self._eof_requested and self._fin_seq is None:
                    # A FIN needs no room in the peer's buffer, only a place in our window.
                    self._fin_seq = snd.next
                    datagram = _encode(FIN, 0, space.wrap(snd.next), ack_wire, window)
                else:
                    break
                policy.on_sent(snd, snd.push(datagram, now), now=now)
                out.append(datagram)
        if snd.next != first:
            self._advertised = window
        if off == end:
            buf.clear()
            off = 0
        elif off >= _COMPACT_AT and off * 2 >= end:
            del buf[:off]
            off = 0
        self._sndoff = off
        # Persist timer: data waits, nothing is in flight, and only the peer's window is in the way.
        blocked = off < len(buf) and snd.in_flight == 0
        if blocked and self._persist_deadline is None:
            self._persist_deadline = now + min(
                self._rto.rto * (1 << min(self._persist_backoff, 16)), self._params.max_rto
            )
        elif not blocked:
            self._persist_deadline = None

    def _send_window_probe(self, now: float) -> None:
        """The persist timer fired: ask the peer for its window again (see the module docstring)."""
        if self._window_probes >= self._params.max_retries:
            self._fail(f"no answer to {self._params.max_retries} zero-window probes", now)
            return
        space, window = self._space, self._receive_window()
        self._advertised = window
        self._out.append(_encode(DATA, 0, space.wrap(self._snd.base - 1), space.wrap(self._rcv.base), window))
        self._window_probes += 1
        log.debug("zero-window probe %d (backoff %d)", self._window_probes, self._persist_backoff)
        self._persist_backoff += 1  # RFC 9293 section 3.8.6.1: exponential backoff

    def _retransmit(self, seq: int, now: float) -> None:
        entry = self._snd.mark_retransmitted(seq, now)
        self._out.append(entry.item)
        self._policy.on_sent(self._snd, seq, now=now)
        self.stats.retransmissions += 1

    def _retransmission_expired(self, now: float) -> None:
        expiry = self._policy.expired(self._snd, now=now)
        if expiry.timed_out:
            self.stats.timeouts += 1
            # One round of retry and backoff per expiry of the oldest segment.  With a timer per
            # segment (SR) the later ones expire in the same round and must not count again.
            if self._snd.base in expiry.timed_out:
                self._retries += 1
                if self._retries > self._params.max_retries:
                    self._fail(f"no acknowledgement after {self._params.max_retries} retransmissions", now)
                    return
                self._rto.backoff()  # RFC 6298 section 5.5; on_sent re-arms with the new value
                self.stats.rto = self._rto.rto
            for seq in expiry.timed_out:
                self._retransmit(seq, now)
        if expiry.lost:
            self.stats.fast_retransmits += 1
            for seq in expiry.lost:
                self._retransmit(seq, now)
        if expiry.probe is not None:
            self.stats.loss_probes += 1
            self._retransmit(expiry.probe, now)

    # -- acknowledgements ------------------------------------------------------------------------

    def _handle_ack(self, segment: Segment, now: float) -> None:
        snd = self._snd
        cumulative = snd.unwrap_ack(segment.ack)
        if cumulative is None:
            behind = self._space.distance(segment.ack, self._space.wrap(snd.base))
            if behind > snd.span:
                self.stats.unexpected_dropped += 1
            return  # an old ACK overtaken by newer ones
        selective = None
        if segment.flags & FLAG_SELECTIVE:
            seq = self._space.unwrap(segment.seq, snd.base)
            selective = seq if seq < snd.next else None
        self._apply_ack(Ack(cumulative, selective, segment.window), now)

    def _apply_ack(self, ack: Ack, now: float) -> None:
        snd = self._snd
        if ack.cumulative >= self._peer_ack:
            self._peer_ack, self._peer_window = ack.cumulative, ack.window
        self._window_probes = 0  # the peer answers
        outcome = self._policy.on_ack(snd, ack, now=now)
        if outcome.acked:
            self._retries = 0
            self._persist_backoff = 0
            for entry in outcome.acked:
                self._unacked_bytes -= len(entry.item) - HEADER_SIZE
            sample = outcome.sample
            if sample is not None and not sample.retransmitted:  # Karn's rule (RFC 6298 section 3)
                self._rto.sample(now - sample.sent_at)
                self.stats.srtt = self._rto.srtt
            else:
                self._rto.progress()
            self.stats.rto = self._rto.rto
        if outcome.duplicate:
            self.stats.dup_acks += 1
        if outcome.retransmit:
            self.stats.fast_retransmits += 1
            for seq in outcome.retransmit:
                self._retransmit(seq, now)
        fin_acked = self._fin_seq is not None and snd.base > self._fin_seq
        if (
            fin_acked
            and self._state in _AWAITING_FIN_ACK
            and self._transition(Trigger.FIN_ACKED) is S.TIME_WAIT
        ):
            self._start_linger(now)
