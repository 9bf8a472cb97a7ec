"""The receiving half of the data path: delivery, acknowledgements and the window we offer.

Strategy: a DATA or FIN segment from the peer goes through three steps.

1. The cumulative ACK it carries for the other direction (every DATA and FIN has one, as in TCP)
   goes to the sending half when it is news (``_apply_ack``, the engine's).
2. Flow control, receiver's side.  The window we advertise is what the receive buffer can still
   take, in whole segments counted from our cumulative ACK; bytes in ``DataReceived`` events that
   the application has not taken count against it.  Each delivered segment uses at most one mss of
   the buffer, so the right edge ``base + window`` never moves left: we never shrink a window we
   offered, and a sender that keeps to it is never refused.  A segment that carries data at or
   beyond that edge is not acceptable (RFC 9293 section 3.10.7.4): it is dropped and counted, and
   answered with an ACK that repeats our cumulative number and window.  So a sender probing a
   closed window (section 3.8.6.1) learns that it is still closed, and nothing it sends can get
   past the window into the application's buffer.
3. The policy decides what the segment means (deliver in order, buffer, re-acknowledge an old one,
   drop a foreign one); its ``Receipt`` becomes ``DataReceived``/``EndOfData`` events and the ACK.

When the application takes data, the window opens; a window update goes out if it opened from zero
or by at least half the buffer (the receiver's side of silly-window avoidance, RFC 9293 section
3.8.6.2.2), so a sender stalled on a closed window does not have to wait for its next probe.

``Receiver`` sits between ``handshake.ConnectionSetup`` and ``engine.Connection`` in the class
chain, so each module keeps to one job.
"""

from __future__ import annotations

import abc
import logging
import random

from netlab.transport.events import DataReceived, EndOfData, Event
from netlab.transport.handshake import ConnectionSetup, Role
from netlab.transport.params import TransportParams
from netlab.transport.policy import Ack
from netlab.transport.segment import FLAG_SELECTIVE, Segment, SegmentType, _encode
from netlab.transport.states import TERMINAL, ConnState, Trigger

__all__ = ["Receiver"]

log = logging.getLogger(__name__)

S = ConnState
_WINDOW_UPDATE_STATES = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})


class Receiver(ConnectionSetup):
    """Handshake plus the receive path; ``engine.Connection`` adds the send path and timers."""

    def __init__(self, params: TransportParams, *, role: Role, rng: random.Random, now: float) -> None:
        super().__init__(params, role=role, rng=rng, now=now)
        self._rx_pending = 0  # bytes in DataReceived events the application has not taken
        self._read_since_ack = False  # the application took data since our latest segment
        self._advertised = 0  # the window (segments) in our latest segment

    def next_event(self) -> Event | None:
        """The next event for the application, or ``None``."""
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is DataReceived:
            self._rx_pending -= len(event.data)
            self._read_since_ack = True
        return event

    # -- hooks the engine provides ---------------------------------------------------------------

    @abc.abstractmethod
    def _apply_ack(self, ack: Ack, now: float) -> None: ...

    @abc.abstractmethod
    def _start_linger(self, now: float) -> None: ...

    # -- DATA and FIN ----------------------------------------------------------------------------

    def _handle_data(self, segment: Segment, now: float) -> None:
        # The cumulative ACK counts when it is news.  It matters at the close: a FIN sent after
        # the peer's FIN arrived acknowledges that FIN even when our separate ACK of it was lost.
        cumulative = self._snd.unwrap_ack(segment.ack)
        if cumulative is not None and cumulative > self._snd.base:
            self._apply_ack(Ack(cumulative, None, segment.window), now)
            if self._state in TERMINAL:
                return  # that ACK ended the connection: nothing may follow Closed
        if (
            segment.payload
            # Only a buffer short of a whole window can refuse anything: skip the arithmetic.
            and self._params.receive_buffer - self._rx_pending < self._rcv.size * self._mss
            and not self._within_offered_window(segment.seq)
        ):
            self.stats.unexpected_dropped += 1
            log.debug("dropped data beyond the window we offered (%d segments)", self._advertised)
            self._send_ack(None)
            return
        receipt = self._policy.on_data(self._rcv, segment.seq, segment)
        if not receipt.expected:
            self.stats.unexpected_dropped += 1
            return
        for item in receipt.deliver:
            if item.type is SegmentType.DATA:
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

    def _within_offered_window(self, wire_seq: int) -> bool:
        """False for a number in our receive window's range but at or past the offered edge."""
        space, rcv = self._space, self._rcv
        ahead = space.distance(space.wrap(rcv.base), wire_seq)
        # Numbers outside [base, base + N) are old or foreign: the policy's business.
        return ahead >= rcv.size or ahead < self._receive_window()

    # -- the window we offer and our ACKs --------------------------------------------------------

    def _receive_window(self) -> int:
        """The window to advertise: what the receive buffer can take, in whole segments."""
        free = self._params.receive_buffer - self._rx_pending
        return max(0, min(self._rcv.size, free // self._mss))

    def _maybe_window_update(self) -> None:
        """The application read data: tell the peer if our window opened from zero or by half."""
        self._read_since_ack = False
        if self._state not in _WINDOW_UPDATE_STATES:
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
        self._out.append(_encode(SegmentType.ACK, flags, seq, space.wrap(self._rcv.base), window))
