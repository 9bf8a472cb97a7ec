"""The connection machine: handshake, data transfer and close, as one sans-I/O datagram machine.

Strategy: the engine is fed datagrams (``receive_datagram``), timer expiries (``handle_timer``) and
application calls (``send``, ``send_eof``, ``abort``); it hands out datagrams
(``datagrams_to_send``), one absolute deadline (``get_timer``) and events (``next_event``).  All
protocol differences between Go-Back-N, Selective Repeat and stop-and-wait live in a
``RetransmitPolicy``.  The rest is split by job along one class chain:

* ``handshake.ConnectionSetup``: the three-way handshake (RFC 9293 section 3.5) with random
  initial sequence numbers, and the windows, policy and RTO estimator it sets up;
* ``receiver.Receiver``: delivery, acknowledgements, the window we offer;
* ``sender.Sender``: segmentation, acknowledgements of our data, retransmission, persist probes;
* ``Connection`` (here): the public API, dispatch of arriving segments, the one deadline that
  covers every timer, the close and failure.

The close: a FIN takes a sequence number and travels through the send window like data; the side
that acknowledges the last FIN lingers (``TIME_WAIT``).  Failure: ``max_retries`` consecutive
expiries without progress (or unanswered zero-window probes), a RST, or a refused handshake end
the connection with ``ConnectionFailed``, a RST to the peer, and no timer left behind.

Sequence numbers are absolute Python ints inside and k bits wide on the wire (``SeqSpace``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from netlab.transport.errors import LocalProtocolError
from netlab.transport.events import Closed, Connected, ConnectionFailed
from netlab.transport.handshake import Role
from netlab.transport.params import TransportParams, TransportStats
from netlab.transport.receiver import Receiver
from netlab.transport.segment import Segment, SegmentType, _encode, decode_segment_untrusted
from netlab.transport.sender import Sender
from netlab.transport.states import SENDING, TERMINAL, ConnState, Trigger

__all__ = ["ConnState", "Connection", "Role", "TransportParams", "TransportStats"]

log = logging.getLogger(__name__)

RST = SegmentType.RST
S = ConnState


class Connection(Sender):
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
        self._linger_deadline: float | None = None

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
            self._send_window_probe(now)
            if self._state in TERMINAL:
                return
        deadline = self._policy.next_deadline()
        if deadline is not None and now >= deadline and self._state not in TERMINAL:
            self._retransmission_expired(now)

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
        SegmentType.DATA: Receiver._handle_data,
        SegmentType.FIN: Receiver._handle_data,
        SegmentType.ACK: Sender._handle_ack,
        SegmentType.RST: _handle_rst,
    }
