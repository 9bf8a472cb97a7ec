"""What the two TFTP transfer machines share: states, events, the retransmission timer.

Strategy: a TFTP transfer is one sender and one receiver; which of them is the client depends on
the request (the client of an RRQ receives, of a WRQ sends).  So there are two machines,
:class:`~netlab.proto.tftp_sender.TftpSender` and :class:`~netlab.proto.tftp_receiver.TftpReceiver`,
each with a ``client(...)`` constructor (it sends the request and negotiates) and a ``server(...)``
constructor (options already negotiated by :func:`~netlab.proto.tftp_options.negotiate_untrusted`).
Both have the datagram/timer shape of every netlab machine::

    m.receive_datagram(data, now)      # a datagram from the peer's transfer ID
    m.datagrams_to_send(now)           # -> list[bytes] for the peer
    m.get_timer() / m.handle_timer(now)
    m.next_event()                     # -> Event | None

This module holds their common half: decoding at the edge (a malformed datagram is answered
with ERROR 4 and ends the transfer), ERROR packets from the peer (they end the transfer and are
never answered, RFC 1350 section 7), one deadline with a bounded count of consecutive expiries,
and the dispatch of every other packet through the subclass's ``_HANDLERS`` table, keyed by
(state, packet type).  A packet type a state has no entry for is an illegal operation; entries
that point at ``_ignore`` mark the stale duplicates that a lossy network legitimately delivers.

Block numbers are 16 bits on the wire and roll over to 0 after 65535, as tftpd-hpa and atftpd
do, so files of any size transfer.  The machines count blocks with unbounded integers and wrap
them only on the wire, with the transport core's ``SeqSpace(16)``; the sender's window is the
transport core's ``SendWindow`` and both timers are its RFC 6298 ``RtoEstimator``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from netlab.proto.tftp_options import TransferOptions, accept_oack_untrusted
from netlab.proto.tftp_packet import (
    Error,
    ErrorCode,
    OptionAck,
    RemoteProtocolError,
    Request,
    decode_packet_untrusted,
    encode,
)
from netlab.transport.rto import DEFAULT_MIN_RTO, RtoEstimator
from netlab.transport.seq import SeqSpace

__all__ = [
    "BLOCKS",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "Event",
    "FinalBlockReceived",
    "Negotiated",
    "PacketHandler",
    "State",
    "TftpTransfer",
    "TransferComplete",
    "TransferFailed",
]

BLOCKS = SeqSpace(16)  # RFC 1350: a two-octet block number
DEFAULT_TIMEOUT = 1.0  # seconds before the first retransmission when none was negotiated
DEFAULT_RETRIES = 6  # consecutive expiries of the timer before a transfer is abandoned


class State(enum.Enum):
    REQUESTING = "requesting"  # client: request sent, waiting for the server's first reply
    NEGOTIATING = "negotiating"  # server sending a file: OACK sent, waiting for ACK 0
    TRANSFERRING = "transferring"
    COMMITTING = "committing"  # receiver: final block in, waiting for the driver to store the file
    DALLYING = "dallying"  # receiver: final ACK sent, re-sent if the final DATA comes again
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class Negotiated:
    """Client only: the server's first reply fixed the transfer's parameters."""

    options: TransferOptions
    #: True if the server answered with an OACK; False if it ignored the options (RFC 2347:
    #: the client then carries on with the defaults).
    acknowledged: bool


@dataclass(frozen=True)
class FinalBlockReceived:
    """Receiver only: every byte has arrived.  Store the file, then call ``commit(now)``.

    The final ACK is what tells the sender its file is safe, so it is held back until the
    driver says the data is durably stored.
    """

    size: int


@dataclass(frozen=True)
class TransferComplete:
    size: int  # octets carried, as on the wire (netascii counts its CR LF pairs)


@dataclass(frozen=True)
class TransferFailed:
    error: Error
    #: True when the peer sent the ERROR; False when we did (or gave up after timeouts).
    by_peer: bool


Event = Negotiated | FinalBlockReceived | TransferComplete | TransferFailed
PacketHandler = Callable[[Any, Any, float], None]


class TftpTransfer:
    """The shared half of both machines; not used on its own."""

    _HANDLERS: ClassVar[dict[tuple[State, type], PacketHandler]] = {}

    def __init__(
        self,
        state: State,
        options: TransferOptions,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, got {timeout} and {retries}")
        self.state = state
        self._timeout = timeout
        self._max_retries = retries
        self._retries = 0  # consecutive expiries without progress
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._deadline: float | None = None
        self._arm: float | None = None  # arm the timer this long after the queued packets go out
        self._set_options(options)

    # -- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the transfer has completed or failed (and nothing is left to send but what
        :meth:`datagrams_to_send` still holds)."""
        return self.state is State.COMPLETE or self.state is State.FAILED

    def get_timer(self) -> float | None:
        """The absolute time at which :meth:`handle_timer` must be called, if any."""
        return self._deadline

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything to send to the peer now, oldest first."""
        out, self._out = self._out, []
        if out and self._arm is not None:
            self._deadline = now + self._arm
            self._arm = None
        return out

    def receive_datagram(self, data: bytes, now: float) -> None:
        """A datagram from the peer's transfer ID (the driver answers strangers with ERROR 5)."""
        if self.closed:
            return
        try:
            packet = decode_packet_untrusted(data)
        except RemoteProtocolError as exc:
            self._fail(exc.error, by_peer=False)
            return
        if type(packet) is Error:
            self._on_error(packet)
            return
        if type(packet) is Request:
            # A late copy of the request that began this transfer: the client retransmits it
            # until it hears from us (RFC 1350 section 4), and a relay or NAT in between may
            # deliver it to our transfer port.  Our reply to it is already on its way.
            return
        handler = self._HANDLERS.get((self.state, type(packet)))
        if handler is None:
            name = type(packet).__name__.upper()
            self._refuse(ErrorCode.ILLEGAL_OPERATION, f"unexpected {name} while {self.state.value}")
            return
        handler(self, packet, now)

    def handle_timer(self, now: float) -> None:
        """Retransmit, or give up after ``retries`` expiries in a row."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is State.DALLYING:
            self.state = State.COMPLETE
            return
        self._retries += 1
        if self._retries > self._max_retries:
            self._refuse(ErrorCode.NOT_DEFINED, f"timed out after {self._max_retries} retransmissions")
            return
        self._on_timeout(now)

    def abort(self, code: ErrorCode, message: str) -> None:
        """End the transfer from our side (disk full, shutting down...): ERROR to the peer."""
        if not self.closed:
            self._refuse(code, message)

    # -- for subclasses ------------------------------------------------------------------------

    def _set_options(self, options: TransferOptions) -> None:
        self.options = options
        # A negotiated timeout is the peer's figure and is used as it is (RFC 2349); otherwise
        # the sender adapts its timer to the measured round trips (RFC 6298), starting from
        # the configured timeout.
        self._interval = float(options.timeout) if options.timeout is not None else self._timeout
        self._adaptive = options.timeout is None
        if self._adaptive:
            floor = min(DEFAULT_MIN_RTO, self._interval)
            self._rto = RtoEstimator(initial_rto=self._interval, min_rto=floor, max_rto=4 * self._interval)
        else:
            fixed = self._interval
            self._rto = RtoEstimator(initial_rto=fixed, min_rto=fixed, max_rto=fixed)

    def _settle_options(self, requested: dict[str, str], oack: OptionAck | None) -> bool:
        """Client: settle the options from the server's first reply, its OACK, or ``None`` when
        it ignored our options and carried on with the defaults (RFC 2347 section 2).

        Returns False when the OACK cannot be accepted; the transfer has then failed (ERROR 8).
        """
        if oack is None:
            options, acknowledged = TransferOptions(), False
        else:
            try:
                options = accept_oack_untrusted(requested, oack.options)
            except RemoteProtocolError as exc:
                self._fail(exc.error, by_peer=False)
                return False
            acknowledged = True
        self._set_options(options)
        self._events.append(Negotiated(options, acknowledged))
        self.state = State.TRANSFERRING
        self._deadline = self._arm = None
        self._retries = 0
        return True

    def _queue(self, packet: bytes, *, rearm: float | None = None) -> None:
        self._out.append(packet)
        if rearm is not None:
            self._arm = rearm

    def _fail(self, error: Error, by_peer: bool) -> None:
        if not by_peer:
            # RFC 1350 section 7: an ERROR is sent once and never acknowledged or retransmitted.
            self._out.append(encode(error))
        self.state = State.FAILED
        self._deadline = self._arm = None
        self._events.append(TransferFailed(error, by_peer))

    def _refuse(self, code: ErrorCode, message: str) -> None:
        self._fail(Error(code, message), by_peer=False)

    def _on_error(self, error: Error) -> None:
        self._fail(error, by_peer=True)

    def _on_timeout(self, now: float) -> None:
        raise NotImplementedError  # pragma: no cover

    def _ignore(self, packet: object, now: float) -> None:
        """A stale duplicate (a retransmitted OACK, a DATA already stored): nothing to do."""
