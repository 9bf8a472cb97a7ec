"""The connection machine: handshake, data transfer and close, as one sans-I/O datagram machine.

Strategy: the engine is fed datagrams (``receive_datagram``), timer expiries (``handle_timer``) and
application calls (``send``, ``send_eof``, ``abort``); it hands out datagrams
(``datagrams_to_send``), one absolute deadline (``get_timer``) and events (``next_event``).  All
protocol differences between Go-Back-N, Selective Repeat and stop-and-wait live in a
``RetransmitPolicy``; everything else is here:

* the three-way handshake (RFC 9293 section 3.5) with random initial sequence numbers from the
  ``random.Random`` passed in; the SYN proposes protocol, k, window and mss, the SYN-ACK settles
  them; SYN and SYN-ACK are retransmitted on the RFC 6298 timer like data;
* the data path: the application's bytes wait in one ``bytearray`` with a read offset and are cut
  into segments of at most ``mss`` bytes only when the window has room, so they are copied once
  into each datagram; every sent segment is kept encoded, so a retransmission costs nothing;
* flow control: never more in flight than the window the peer last advertised (in segments,
  counted from its cumulative ACK); a closed window is probed on a persist timer (RFC 9293
  section 3.8.6.1), and a receiver whose application catches up sends a window update;
* the close: a FIN takes a sequence number and travels through the send window like data, so it
  is retransmitted and acknowledged by the same machinery; the side that acknowledges the last FIN
  lingers (``TIME_WAIT``);
* failure: ``max_retries`` consecutive expiries without progress, a RST, or a refused handshake end
  the connection with ``ConnectionFailed``, a RST to the peer, and no timer left behind.

Sequence numbers are absolute Python ints inside and k bits wide on the wire (``SeqSpace``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from netlab.transport.errors import LocalProtocolError
from netlab.transport.events import Closed, Connected, ConnectionFailed, DataReceived, EndOfData, Event
from netlab.transport.handshake import ConnectionSetup, Role
from netlab.transport.params import TransportParams, TransportStats
from netlab.transport.policy import Ack
from netlab.transport.segment import (
    FLAG_SELECTIVE,
    HEADER_SIZE,
    Segment,
    SegmentType,
    _encode,
    decode_segment_untrusted,
)
from netlab.transport.states import SENDING, TERMINAL, ConnState, Trigger

__all__ = ["ConnState", "Connection", "Role", "TransportParams", "TransportStats"]

log = logging.getLogger(__name__)

_COMPACT_AT = 1 << 20  # bytes consumed from the send buffer before it is compacted

DATA, ACK, FIN, RST = SegmentType.DATA, SegmentType.ACK, SegmentType.FIN, SegmentType.RST
S = ConnState
_AWAITING_FIN_ACK = frozenset({S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})


class Connection(ConnectionSetup):
    """One end of a reliable connection.

    Args:
        params: the protocol and its limits (a server's are upper bounds, see ``params``).
        role: ``Role.CLIENT`` sends the SYN from its first ``datagrams_to_send()``;
            ``Role.SERVER`` waits for one (a listener creates it when a SYN arrives).
        rng: where the initial sequence number comes from (``random.SystemRandom()`` in
            production, a seeded ``random.Random`` in tests).
        now: the current time in seconds (virtual or ``trio.current_time()``).
    """

    def __init__(self, params: TransportParams, *, role: Role, rng: random.Random, now: float) -> None:
        super().__init__(params, role=role, rng=rng, now=now)
        self._sndbuf = bytearray()  # application bytes not yet cut into segments ...
        self._sndoff = 0  # ... starting at this offset
        self._unacked_bytes = 0  # payload bytes sent and not yet acknowledged
        self._eof_requested = False
        self._fin_seq: int | None = None  # absolute number of our FIN once sent
        self._rx_pending = 0  # bytes in DataReceived events the application has not taken
        self._read_since_ack = False  # the application took data since our latest segment
        self._advertised = 0  # the window (segments) in our latest segment
        self._linger_deadline: float | None = None
        self._persist_deadline: float | None = None
        self._persist_backoff = 0
        self._probe = False  # the persist timer fired: one segment may go past the peer's window

    # -- properties ------------------------------------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def closed(self) -> bool:
        """Nothing more will ever happen: the connection ended and its last datagram went out."""
        return self._state in TERMINAL and not self._out

    @property
    def send_buffer_free(self) -> int:
        """Bytes ``send()`` may still queue before the send buffer is full (never negative)."""
        used = len(self._sndbuf) - self._sndoff + self._unacked_bytes
        return max(0, self._params.send_buffer - used)

    # -- application calls -----------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for the peer.

        Raises:
            LocalProtocolError: after ``send_eof()``, ``abort()`` or the end of the connection.
        """
        if self._eof_requested or self._state in TERMINAL:
            raise LocalProtocolError(
                f"can't send data in state {self._state.name} after the end of our stream"
            )
        self._sndbuf += data

    def send_eof(self) -> None:
        """Send a FIN after all queued data (half-close).  Calling it again does nothing.

        Raises:
            LocalProtocolError: the connection has already ended.
        """
        if self._eof_requested:
            return
        if self._state in TERMINAL:
            raise LocalProtocolError(f"can't end the stream in state {self._state.name}")
        self._eof_requested = True
        if self._state in (S.ESTABLISHED, S.CLOSE_WAIT):
            self._transition(Trigger.APP_EOF)

    def abort(self) -> None:
        """Send a RST and end the connection now, without ``ConnectionFailed``."""
        if self._state in TERMINAL:
            return
        if self._state not in (S.LISTEN, S.SYN_SENT) or self._syn_sent_at is not None:
            self._out.append(self._rst_datagram())
        self._transition(Trigger.ABORT)

    def next_event(self) -> Event | None:
        """The next event for the application, or ``None``."""
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is DataReceived:
            self._rx_pending -= len(event.data)
            self._read_since_ack = True
        return event

    # -- network and timer -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Feed one datagram from the peer.  Never raises: bad input is dropped and counted."""
        self.stats.segments_received += 1
        if self._state in TERMINAL:
            return
        if self._params.idle_timeout is not None and self._state is not S.LISTEN:
            self._idle_deadline = now + self._params.idle_timeout
        segment = decode_segment_untrusted(data)
        if segment is None:
            self.stats.corrupt_dropped += 1
            log.debug("dropped a corrupt or truncated datagram of %d bytes", len(data))
            return
        if not self._handle_handshake(segment, now):
            self._DISPATCH[segment.type](self, segment, now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Every datagram due now: control segments and retransmissions first, then new data."""
        self._maybe_send_syn(now)
        if self._read_since_ack:
            self._maybe_window_update()
        out, self._out = self._out, []
        if self._state in SENDING:
            self._fill(out, now)
        self.stats.segments_sent += len(out)
        return out

    def get_timer(self) -> float | None:
        """The absolute time at which ``handle_timer`` must be called, or ``None``."""
        if self._state in TERMINAL:
            return None
        best = self._policy.next_deadline()
        for deadline in (
            self._handshake_deadline,
            self._persist_deadline,
            self._linger_deadline,
            self._idle_deadline,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def handle_timer(self, now: float) -> None:
        """Act on every deadline at or before ``now``."""
        if self._state in TERMINAL:
            return
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_expired(now)
        if self._linger_deadline is not None and now >= self._linger_deadline:
            self._linger_deadline = None
            self._transition(Trigger.LINGER_EXPIRED)
            return
        if self._idle_deadline is not None and now >= self._idle_deadline and self._state is not S.TIME_WAIT:
            self._fail(f"nothing heard from the peer for {self._params.idle_timeout} s", now)
            return
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._persist_deadline = None
            self._probe = True
            self._persist_backoff += 1
        deadline = self._policy.next_deadline()
        if deadline is not None and now >= deadline and self._state not in TERMINAL:
            self._retransmission_expired(now)

    # -- sending ---------------------------------------------------------------------------------

    def _fill(self, out: list[bytes], now: float) -> None:
        """Cut queued bytes into segments while the send window and the peer's window allow."""
        snd, policy, space = self._snd, self._policy, self._space
        mss, rto = self._mss, self._rto.rto
        ack_wire = space.wrap(self._rcv.base)
        window = self._receive_window()
        edge = self._peer_ack + self._peer_window
        buf, off = self._sndbuf, self._sndoff
        end = len(buf)
        with memoryview(buf) as view:
            while snd.next - snd.base < snd.size:
                if off < end:
                    if snd.next >= edge:
                        if not self._probe:
                            break
                        self._probe = False  # RFC 9293 section 3.8.6.1: one zero-window probe
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
                policy.on_sent(snd, snd.push(datagram, now), now=now, rto=rto)
                out.append(datagram)
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

    def _retransmit(self, seq: int, now: float) -> None:
        entry = self._snd.mark_retransmitted(seq, now)
        self._out.append(entry.item)
        self._policy.on_sent(self._snd, seq, now=now, rto=self._rto.rto)
        self.stats.retransmissions += 1

    def _retransmission_expired(self, now: float) -> None:
        due = self._policy.expired(self._snd, now=now, rto=self._rto.rto)
        if not due:
            return
        self.stats.timeouts += 1
        # One round of retry and backoff per expiry of the oldest segment.  With a timer per
        # segment (SR) the later ones expire in the same round and must not count again.
        if self._snd.base in due:
            self._retries += 1
            if self._retries > self._params.max_retries:
                self._fail(f"no acknowledgement after {self._params.max_retries} retransmissions", now)
                return
            self._rto.backoff()  # RFC 6298 section 5.5; on_sent re-arms with the new value
            self.stats.rto = self._rto.rto
        for seq in due:
            self._retransmit(seq, now)

    # -- receiving -------------------------------------------------------------------------------

    def _handle_data(self, segment: Segment, now: float) -> None:
        # The cumulative ACK that every DATA and FIN carries (as in TCP) counts when it is news.
        # It matters at the close: a FIN sent after the peer's FIN arrived acknowledges that FIN
        # even when our separate ACK of it was lost.
        cumulative = self._snd.unwrap_ack(segment.ack)
        if cumulative is not None and cumulative > self._snd.base:
            self._apply_ack(Ack(cumulative, None, segment.window), now)
            if self._state in TERMINAL:
                return  # that ACK ended the connection: nothing may follow Closed
        receipt = self._policy.on_data(self._rcv, segment.seq, segment)
        if not receipt.expected:
            self.stats.unexpected_dropped += 1
            return
        for item in receipt.deliver:
            if item.type is DATA:
                if item.payload:
                    self._rx_pending += len(item.payload)
                    self.stats.bytes_received += len(item.payload)
                    self._events.append(DataReceived(item.payload))
            else:
                self._events.append(EndOfData())
                if self._transition(Trigger.PEER_FIN) is S.TIME_WAIT:
                    self._start_linger(now)
        if self._state is S.TIME_WAIT and not receipt.deliver:
            self._start_linger(now)  # the peer repeated its FIN: our last ACK was lost
        if receipt.ack:
            self._send_ack(receipt.selective)

    def _handle_ack(self, segment: Segment, now: float) -> None:
        snd = self._snd
        cumulative = snd.unwrap_ack(segment.ack)
        if cumulative is None:
            behind = self._space.distance(segment.ack, self._space.wrap(snd.base))
            if behind > snd.size:
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
        outcome = self._policy.on_ack(snd, ack, now=now, rto=self._rto.rto)
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

    def _handle_rst(self, segment: Segment, now: float) -> None:
        # Accept a RST only if its number is where the peer's stream can be (RFC 9293 3.10.7.4
        # asks for the same, so a stray or forged RST cannot end the connection).
        if self._space.distance(self._rcv.base, segment.seq) > self._rcv.size:
            self.stats.unexpected_dropped += 1
            return
        self._fail("connection reset by peer", now, send_rst=False, trigger=Trigger.RESET)

    def _handle_unexpected(self, segment: Segment, now: float) -> None:
        self.stats.unexpected_dropped += 1
        log.debug("dropped an unexpected %s in state %s", segment.type.name, self._state.name)

    # -- helpers ---------------------------------------------------------------------------------

    def _receive_window(self) -> int:
        """The window to advertise: what the receive buffer can take, in whole segments."""
        free = self._params.receive_buffer - self._rx_pending
        return max(0, min(self._rcv.size, free // self._mss))

    def _maybe_window_update(self) -> None:
        """The application read data: tell the peer if our window opened from zero or by half."""
        self._read_since_ack = False
        if self._state not in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2):
            return
        window = self._receive_window()
        full = max(1, min(self._rcv.size, self._params.receive_buffer // self._mss))
        if window - self._advertised >= max(1, full // 2) or (self._advertised == 0 < window):
            self._send_ack(None)

    def _send_ack(self, selective: int | None) -> None:
        window = self._receive_window()
        self._advertised = window
        self._read_since_ack = False
        space = self._space
        if selective is None:
            seq, flags = space.wrap(self._snd.next), 0
        else:
            seq, flags = space.wrap(selective), FLAG_SELECTIVE
        self._out.append(_encode(ACK, flags, seq, space.wrap(self._rcv.base), window))

    def _rst_datagram(self) -> bytes:
        return _encode(RST, 0, self._space.wrap(self._snd.next), self._space.wrap(self._rcv.base), 0)

    def _start_linger(self, now: float) -> None:
        self._linger_deadline = now + self._params.linger
        if self._params.linger == 0:
            self._linger_deadline = None
            self._transition(Trigger.LINGER_EXPIRED)

    def _fail(
        self, reason: str, now: float, *, send_rst: bool = True, trigger: Trigger = Trigger.GIVE_UP
    ) -> None:
        log.info("connection failed: %s", reason)
        if send_rst:
            self._out.append(self._rst_datagram())
        self._transition(trigger)
        self._events.append(ConnectionFailed(reason))

    def _transition(self, trigger: Trigger) -> ConnState:
        super()._transition(trigger)
        if self._state in TERMINAL:
            self._policy.clear_timers()
            self._handshake_deadline = self._linger_deadline = self._persist_deadline = None
            self._idle_deadline = None
            if self._state is S.CLOSED and trigger is not Trigger.ABORT:
                self._events.append(Closed())
        elif self._state is S.ESTABLISHED:
            self._events.append(Connected())
            if self._eof_requested:
                self._transition(Trigger.APP_EOF)
        return self._state

    _DISPATCH: dict[SegmentType, Callable[[Connection, Segment, float], None]] = {
        SegmentType.SYN: _handle_unexpected,
        SegmentType.SYN_ACK: _handle_unexpected,
        SegmentType.DATA: _handle_data,
        SegmentType.FIN: _handle_data,
        SegmentType.ACK: _handle_ack,
        SegmentType.RST: _handle_rst,
    }
