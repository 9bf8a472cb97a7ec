"""Connection set-up: the three-way handshake and the parameters it settles.

Strategy (RFC 9293 section 3.5, reduced to what a datagram transport needs):

1. The client picks a random initial sequence number (ISN) and sends a SYN numbered with it,
   carrying the protocol, k, window and mss it wants (``SynOptions``).
2. A server in ``LISTEN`` checks those against the rules (``negotiate``), picks its own random ISN
   and answers with a SYN-ACK that acknowledges ISN+1 and carries what it agreed to: the client's
   protocol and k, and the smaller window and mss of the two.  A proposal it cannot accept gets a
   RST.
   A listener should create a server connection only for a datagram that decodes as a SYN;
   anything else reaching ``LISTEN`` is counted and ignored.
3. The client checks the SYN-ACK (``check_agreement``: nothing it did not ask for), adopts the
   agreed values and acknowledges.  The server is established on the first segment that
   acknowledges its ISN+1: the ACK, or a DATA or FIN if that ACK was lost.

SYN and SYN-ACK are retransmitted on the RFC 6298 timer and count towards the retry limit.  A
duplicate SYN-ACK after the client is established means its ACK was lost: it is acknowledged again.
Random ISNs make it unlikely that a segment of an earlier connection between the same addresses
falls into the new connection's windows; those that do not are dropped and counted.

``ConnectionSetup`` is the first of the classes that make up ``engine.Connection`` (then
``receiver.Receiver``, ``sender.Sender``): it owns the state that set-up creates (windows, policy,
sequence space, RTO estimator), so the other modules can keep to the data path.
"""

from __future__ import annotations

import abc
import enum
import logging
import random
from collections import deque

from netlab.transport.errors import RemoteProtocolError
from netlab.transport.events import ConnectionFailed, Event
from netlab.transport.params import TransportParams, TransportStats
from netlab.transport.policy import RetransmitPolicy, create_policy
from netlab.transport.rto import RtoEstimator
from netlab.transport.segment import (
    MAX_MSS,
    Segment,
    SegmentType,
    SynOptions,
    _encode,
    decode_syn_options,
    encode_syn_options,
)
from netlab.transport.seq import MAX_SEQ_BITS, MIN_SEQ_BITS, SeqSpace
from netlab.transport.states import ConnState, Trigger, next_state
from netlab.transport.window import ReceiveWindow, SendWindow, WindowRule, check_window_size

__all__ = ["ConnectionSetup", "Role", "check_agreement", "negotiate"]

log = logging.getLogger(__name__)

S = ConnState


def negotiate(params: TransportParams, proposal: SynOptions | None) -> SynOptions | str:
    """What a server with ``params`` agrees to for a client's ``proposal``, or why it refuses."""
    if proposal is None:
        return "malformed SYN options"
    if not MIN_SEQ_BITS <= proposal.seq_bits <= MAX_SEQ_BITS:
        return f"k={proposal.seq_bits} is outside {MIN_SEQ_BITS}..{MAX_SEQ_BITS}"
    try:
        check_window_size(proposal.window, SeqSpace(proposal.seq_bits), create_policy(proposal.protocol).rule)
    except ValueError as exc:
        return str(exc)
    if proposal.protocol == "saw" and proposal.window != 1:
        return f"stop-and-wait needs a window of 1, got {proposal.window}"
    if not 1 <= proposal.mss <= MAX_MSS:
        return f"mss {proposal.mss} is outside 1..{MAX_MSS}"
    return proposal._replace(window=min(proposal.window, params.window), mss=min(proposal.mss, params.mss))


def check_agreement(proposal: SynOptions, agreed: SynOptions | None) -> str | None:
    """Why a client must refuse the server's answer ``agreed`` to ``proposal``, or ``None``."""
    if agreed is None:
        return "malformed SYN-ACK options"
    if (agreed.protocol, agreed.seq_bits) != (proposal.protocol, proposal.seq_bits):
        return f"server changed protocol/k to {agreed.protocol}/{agreed.seq_bits}"
    if not 1 <= agreed.window <= proposal.window or not 1 <= agreed.mss <= proposal.mss:
        return f"server chose window {agreed.window} / mss {agreed.mss}, more than asked or zero"
    return None


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class ConnectionSetup(abc.ABC):
    """The handshake half of a connection; ``engine.Connection`` adds the data path."""

    def __init__(self, params: TransportParams, *, role: Role, rng: random.Random, now: float) -> None:
        self._params = params
        self.role = role
        self.is_client = role is Role.CLIENT
        self.stats = TransportStats(rto=params.initial_rto)
        self._rto = RtoEstimator(
            initial_rto=params.initial_rto, min_rto=params.min_rto, max_rto=params.max_rto
        )
        self._rng = rng
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []  # control segments and retransmissions, sent before new data
        self._state = S.SYN_SENT if self.is_client else S.LISTEN
        self._retries = 0  # consecutive expiries without progress
        self._proposed = SynOptions(params.protocol, params.seq_bits, params.effective_window, params.mss)
        self._isn = rng.randrange(1 << params.seq_bits)
        self._peer_isn = 0
        self._syn_sent_at: float | None = None  # when the SYN / SYN-ACK went out first
        self._syn_retransmitted = False
        self._handshake_deadline: float | None = None
        self._idle_deadline: float | None = None  # params.idle_timeout after the latest datagram
        self._setup(self._proposed, snd_base=self._isn + 1, rcv_base=0)
        self._peer_window = 1  # the peer's advertised window, in segments past _peer_ack

    def _setup(self, options: SynOptions, *, snd_base: int, rcv_base: int) -> None:
        """Build the windows and policy for the options in force."""
        self._protocol = options.protocol
        self._space = SeqSpace(options.seq_bits)
        self._policy: RetransmitPolicy = create_policy(options.protocol, self._rto)
        rule, window = self._policy.rule, options.window
        span = receive_span = window
        if rule is WindowRule.SELECTIVE:
            # N bounds the segments outstanding, not the numbers between base and next (see
            # ``SendWindow``): the sender may run as far ahead as the sequence space allows and
            # the receiver's advertised window permits, and the receiver buffers what its receive
            # buffer holds, never less than N segments nor more than 2**(k-1) numbers.
            span = rule.limit(self._space)
            buffered = self._params.receive_buffer // options.mss
            receive_span = max(window, min(span, buffered))
        self._snd: SendWindow[bytes] = SendWindow(self._space, window, rule, base=snd_base, span=span)
        self._rcv: ReceiveWindow[Segment] = ReceiveWindow(self._space, receive_span, base=rcv_base)
        self._mss = options.mss
        self._peer_ack = snd_base  # the peer's latest cumulative ACK (absolute)

    # -- hooks the engine provides ---------------------------------------------------------------

    @abc.abstractmethod
    def _send_ack(self, selective: int | None) -> None: ...

    @abc.abstractmethod
    def _receive_window(self) -> int: ...

    @abc.abstractmethod
    def _fail(
        self, reason: str, now: float, *, send_rst: bool = True, trigger: Trigger = Trigger.GIVE_UP
    ) -> None: ...

    def _transition(self, trigger: Trigger) -> ConnState:
        """Move to the state ``TRANSITIONS`` gives for ``trigger``; returns it."""
        old, self._state = self._state, next_state(self._state, trigger)
        log.debug("%s -> %s (%s)", old.name, self._state.name, trigger.value)
        return self._state

    # -- the handshake ---------------------------------------------------------------------------

    def _syn_datagram(self) -> bytes:
        if self.is_client:
            options = self._proposed
            return _encode(
                SegmentType.SYN, 0, self._isn, 0, self._receive_window(), encode_syn_options(options)
            )
        agreed = SynOptions(self._protocol, self._space.bits, self._snd.size, self._mss)
        ack = self._space.wrap(self._rcv.base)
        return _encode(
            SegmentType.SYN_ACK, 0, self._isn, ack, self._receive_window(), encode_syn_options(agreed)
        )

    def _maybe_send_syn(self, now: float) -> None:
        if self._state is S.SYN_SENT and self._syn_sent_at is None:
            self._send_syn(now)

    def _send_syn(self, now: float) -> None:
        if self._syn_sent_at is None and self._params.idle_timeout is not None:
            self._idle_deadline = now + self._params.idle_timeout
        self._out.append(self._syn_datagram())
        self._syn_sent_at = now
        self._handshake_deadline = now + self._rto.rto

    def _handshake_expired(self, now: float) -> None:
        self.stats.timeouts += 1
        self._retries += 1
        if self._retries > self._params.max_retries:
            what = "SYN" if self.is_client else "SYN-ACK"
            self._fail(f"no answer to our {what} after {self._params.max_retries} retransmissions", now)
            return
        self._rto.backoff()
        self.stats.rto = self._rto.rto
        self._syn_retransmitted = True
        self.stats.retransmissions += 1
        self._send_syn(now)

    def _handshake_done(self, now: float, trigger: Trigger) -> None:
        if self._syn_sent_at is not None and not self._syn_retransmitted:  # Karn's rule
            self._rto.sample(now - self._syn_sent_at)
            self.stats.srtt, self.stats.rto = self._rto.srtt, self._rto.rto
        self._handshake_deadline = None
        self._retries = 0
        self._transition(trigger)

    def _handle_handshake(self, segment: Segment, now: float) -> bool:
        """Handle ``segment`` if set-up is its business; ``False`` passes it to the data path."""
        state, kind = self._state, segment.type
        if state is S.LISTEN:
            if kind is SegmentType.SYN:
                self._accept_syn(segment, now)
            else:
                self.stats.unexpected_dropped += 1  # still listening, as a TCP listener would
            return True
        if state is S.SYN_SENT:
            if kind is SegmentType.SYN_ACK and segment.ack == self._space.wrap(self._isn + 1):
                self._accept_syn_ack(segment, now)
            elif kind is SegmentType.RST and segment.ack == self._space.wrap(self._isn + 1):
                self._fail("connection refused by the peer", now, send_rst=False, trigger=Trigger.RESET)
            else:
                self.stats.unexpected_dropped += 1
            return True
        if state is S.SYN_RCVD:
            if kind is SegmentType.SYN and segment.seq == self._space.wrap(self._peer_isn):
                self._syn_retransmitted = True  # the client retransmitted: our SYN-ACK was lost
                self.stats.retransmissions += 1
                self._out.append(self._syn_datagram())
                return True
            if kind is SegmentType.RST:
                return False
            if kind in (SegmentType.SYN, SegmentType.SYN_ACK) or segment.ack != self._space.wrap(
                self._snd.base
            ):
                self.stats.unexpected_dropped += 1
                return True
            self._handshake_done(now, Trigger.HANDSHAKE_ACKED)  # then the data path takes it
            return False
        if (
            kind is SegmentType.SYN_ACK
            and self.is_client
            and segment.seq == self._space.wrap(self._peer_isn)
            and segment.ack == self._space.wrap(self._isn + 1)
        ):
            self._send_ack(None)  # our handshake ACK was lost: the server repeated its SYN-ACK
            return True
        return False

    def _refuse(self, reason: str) -> None:
        """A listening server refuses this peer's SYN (the caller sent the RST)."""
        self._transition(Trigger.REFUSE)
        self._events.append(ConnectionFailed(reason))

    def _accept_syn(self, segment: Segment, now: float) -> None:
        try:
            agreed = self._check_syn(segment)
        except RemoteProtocolError as exc:
            log.info("refusing a SYN: %s", exc)
            if exc.reply is not None:
                self._out.append(exc.reply)
            self._refuse(f"refused the SYN: {exc}")
            return
        self._isn = self._rng.randrange(1 << agreed.seq_bits)
        self._peer_isn = segment.seq
        self._setup(agreed, snd_base=self._isn + 1, rcv_base=segment.seq + 1)
        self._peer_window = segment.window
        self._transition(Trigger.SYN_RECEIVED)
        self._send_syn(now)

    def _check_syn(self, segment: Segment) -> SynOptions:
        """What to agree to for this SYN.

        Raises:
            RemoteProtocolError: the SYN asks for something illegal; ``reply`` is the RST.
        """
        proposal = decode_syn_options(segment.payload)
        agreed = negotiate(self._params, proposal)
        if isinstance(agreed, SynOptions) and segment.seq >> agreed.seq_bits:
            agreed = f"SYN number {segment.seq} does not fit in k={agreed.seq_bits} bits"
        if isinstance(agreed, str):
            # The RST acknowledges the SYN in the client's own k, so that the client accepts it.
            bits = proposal.seq_bits if proposal and MIN_SEQ_BITS <= proposal.seq_bits <= MAX_SEQ_BITS else 32
            ack = (segment.seq + 1) & ((1 << bits) - 1)
            raise RemoteProtocolError(agreed, reply=_encode(SegmentType.RST, 0, 0, ack, 0))
        return agreed

    def _accept_syn_ack(self, segment: Segment, now: float) -> None:
        self._peer_isn = segment.seq
        self._rcv.base = segment.seq + 1  # so that the RST we may send is acceptable to the server
        agreed = decode_syn_options(segment.payload)
        problem = check_agreement(self._proposed, agreed)
        if problem is not None or agreed is None:
            self._fail(f"bad handshake: {problem}", now, trigger=Trigger.REFUSE)
            return
        self._setup(agreed, snd_base=self._isn + 1, rcv_base=segment.seq + 1)
        self._peer_window = segment.window
        self._handshake_done(now, Trigger.SYN_ACK_RECEIVED)
        self._send_ack(None)
