"""The sending side of a TFTP transfer (RFC 1350, windowed per RFC 7440).

Strategy: the sender keeps the file's bytes from the oldest unacknowledged block onward in one
``bytearray``; block ``n`` is the slice ``[(n - base) * blksize, ...)`` of it, so a DATA packet is
a precompiled header plus a memoryview slice, and an acknowledgment simply deletes bytes from
the front (O(1) for a bytearray).  The driver keeps it filled: :attr:`data_wanted` says how much
to read ahead (two windows, at least 256 KiB, so file reads happen in big chunks off the event
loop), :meth:`feed` adds it and :meth:`end_of_data` marks the end of the file.  The final block
is the first one shorter than blksize, possibly empty.

The window is Go-Back-N, as RFC 7440 section 4 describes it: send ``windowsize`` blocks, wait
for one ACK; an ACK for block ``n`` means every block up to ``n`` arrived and the receiver
discarded what came after a gap, so the next window starts at ``n + 1``.  A windowsize of 1 is
RFC 1350's lockstep.

Retransmission happens on timeout.  A duplicate ACK (one for a block already acknowledged) is
never answered in lockstep: answering it is the Sorcerer's Apprentice bug (RFC 1123 section
4.2.3.1), where every duplicate doubles the traffic.  With a window, a duplicate ACK is the
receiver's RFC 7440 signal that the first block of the window went missing; it is answered with
one early retransmission per window position, so duplicated ACKs cannot multiply anything.
The timer adapts to measured round trips (RFC 6298, Karn's rule: no samples from retransmitted
blocks) unless a timeout was negotiated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from netlab.proto.tftp_options import TransferOptions, accept_oack_untrusted
from netlab.proto.tftp_packet import (
    Ack,
    LocalProtocolError,
    Opcode,
    OptionAck,
    RemoteProtocolError,
    Request,
    encode,
    encode_data,
)
from netlab.proto.tftp_transfer import (
    BLOCKS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Negotiated,
    PacketHandler,
    State,
    TftpTransfer,
    TransferComplete,
)

__all__ = ["TftpSender"]

#: Blocks between two RTT samples.  One timed block per round trip is what TCP does without
#: timestamps; in lockstep that would be every block, and the estimator needs far fewer.
SAMPLE_SPACING = 16
_WIRE = BLOCKS.size - 1  # the mask that turns a block count into a wire block number


class TftpSender(TftpTransfer):
    """Sends one file: the server's half of a read request, the client's half of a write."""

    def __init__(
        self,
        state: State,
        options: TransferOptions,
        *,
        opening: bytes | None = None,
        requested: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(state, options, timeout=timeout, retries=retries)
        self._opening = opening  # the request or OACK, repeated until the peer answers it
        self._requested = dict(requested or {})
        self._buf = bytearray()  # the file from block _base onward
        self._eof = False
        self._base = 1  # oldest unacknowledged block (unbounded; the wire number is & 0xFFFF)
        self._next = 1  # next block to (re)transmit
        self._highest_sent = 0
        self._final: int | None = None  # the final block's number, once known
        self._timed: tuple[int, float] | None = None  # (block, first sent at) for an RTT sample
        self._sample_from = 1  # the first block that may be timed next
        self._dup_answered = False  # early retransmission already done for this window position
        self._acked_bytes = 0
        if opening is not None:
            self._queue(opening, rearm=self._interval)

    @classmethod
    def client(
        cls,
        filename: str,
        mode: str,
        requested: Mapping[str, str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> TftpSender:
        """A client writing ``filename``: sends the WRQ with the ``requested`` options."""
        wrq = encode(Request(Opcode.WRQ, filename, mode, dict(requested)))
        return cls(
            State.REQUESTING,
            TransferOptions(),
            opening=wrq,
            requested=requested,
            timeout=timeout,
            retries=retries,
        )

    @classmethod
    def server(
        cls,
        options: TransferOptions,
        oack: Mapping[str, str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> TftpSender:
        """A server answering a read request: an OACK first if options were accepted (RFC 2347),
        else DATA 1 at once."""
        if oack:
            opening = encode(OptionAck(dict(oack)))
            return cls(State.NEGOTIATING, options, opening=opening, timeout=timeout, retries=retries)
        return cls(State.TRANSFERRING, options, timeout=timeout, retries=retries)

    # -- the data source -----------------------------------------------------------------------

    @property
    def wants_data(self) -> bool:
        """True when less than two windows are buffered and the file has more: :meth:`feed`."""
        return not self._eof and len(self._buf) <= self._low_water and not self.closed

    def feed(self, data: bytes) -> None:
        """The next bytes of the file (as they go on the wire: netascii already translated)."""
        if self._eof:
            raise LocalProtocolError("feed() after end_of_data()")
        self._buf += data

    def end_of_data(self) -> None:
        """There is no more file: the block that runs short (maybe empty) is the final one."""
        self._eof = True

    @property
    def bytes_transferred(self) -> int:
        """Octets the receiver has acknowledged."""
        return self._acked_bytes

    # -- machine -------------------------------------------------------------------------------

    def _set_options(self, options: TransferOptions) -> None:
        super()._set_options(options)
        self._current_rto = self._rto.rto
        self._low_water = 2 * options.windowsize * options.blksize  # bytes: two windows

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.state is State.TRANSFERRING:
            self._fill_window(now)
        return super().datagrams_to_send(now)

    def _fill_window(self, now: float) -> None:
        """Queue the blocks from ``_next`` to the end of the window that the buffer holds."""
        limit = self._base + self.options.windowsize
        if self._final is not None:
            limit = min(limit, self._final + 1)
        if self._next >= limit:
            return
        blksize = self.options.blksize
        have = len(self._buf)
        sent = False
        with memoryview(self._buf) as view:
            while self._next < limit:
                start = (self._next - self._base) * blksize
                if start + blksize > have and not self._eof:
                    break  # wait for the driver to feed the rest of this block
                chunk = view[start : start + blksize]
                if len(chunk) < blksize:
                    self._final = self._next
                    limit = self._next + 1
                self._out.append(encode_data(self._next, chunk))
                if self._next > self._highest_sent:
                    self._highest_sent = self._next
                    if self._timed is None and self._next >= self._sample_from:
                        self._timed = (self._next, now)
                else:
                    self._timed = None  # Karn: no RTT sample across a retransmission
                self._next += 1
                sent = True
        if sent:
            self._deadline = now + self._current_rto

    def _on_timeout(self, now: float) -> None:
        if self.state is not State.TRANSFERRING:
            assert self._opening is not None
            self._rto.backoff()
            self._queue(self._opening, rearm=self._rto.rto)
            return
        self._rto.backoff()  # RFC 6298 section 5.5
        self._current_rto = self._rto.rto
        # The backed-off timer lasts until a fresh sample (Karn), so time the next new block.
        self._sample_from = 0
        self._next = self._base  # Go-Back-N: resend the whole window

    def _on_ack(self, ack: Ack, now: float) -> None:
        distance = BLOCKS.distance(self._base - 1 & _WIRE, ack.block)
        if distance == 0:
            self._on_duplicate_ack(now)
            return
        if distance > self._highest_sent - self._base + 1:
            return  # a stale ACK from an earlier window, delayed in the network
        acked = self._base - 1 + distance
        if self._timed is not None and self._timed[0] <= acked:
            if self._adaptive:
                self._rto.sample(now - self._timed[1])
                self._current_rto = self._rto.rto
            self._timed = None
            self._sample_from = acked + SAMPLE_SPACING
        before = len(self._buf)
        del self._buf[: distance * self.options.blksize]
        self._acked_bytes += before - len(self._buf)
        self._base = self._next = acked + 1
        self._retries = 0
        self._dup_answered = False
        self._deadline = None  # re-armed when the next window goes out
        if acked == self._final:
            self.state = State.COMPLETE
            self._events.append(TransferComplete(self._acked_bytes))

    def _on_duplicate_ack(self, now: float) -> None:
        if self.options.windowsize == 1 or self._dup_answered or self._highest_sent < self._base:
            return  # RFC 1123 4.2.3.1: never answer a duplicate ACK in lockstep
        self._dup_answered = True
        self._next = self._base

    def _on_oack_ack(self, ack: Ack, now: float) -> None:
        """Server: ACK 0 accepts our OACK (RFC 2347 section 2); DATA 1 may go."""
        if ack.block == 0:
            self.state = State.TRANSFERRING
            self._deadline = self._arm = None
            self._retries = self._rto.backoffs = 0
            self._current_rto = self._rto.rto

    def _on_first_reply(self, packet: OptionAck | Ack, now: float) -> None:
        """Client: the server's answer to our WRQ, an OACK or a plain ACK 0."""
        if isinstance(packet, Ack):
            if packet.block != 0:
                return
            options, acknowledged = TransferOptions(), False
        else:
            try:
                options = accept_oack_untrusted(self._requested, packet.options)
            except RemoteProtocolError as exc:
                self._fail(exc.error, by_peer=False)
                return
            acknowledged = True
        self._set_options(options)
        self._events.append(Negotiated(options, acknowledged))
        self.state = State.TRANSFERRING
        self._deadline = self._arm = None
        self._retries = 0

    _HANDLERS: ClassVar[dict[tuple[State, type], PacketHandler]] = {
        (State.REQUESTING, OptionAck): _on_first_reply,
        (State.REQUESTING, Ack): _on_first_reply,
        (State.NEGOTIATING, Ack): _on_oack_ack,
        (State.TRANSFERRING, Ack): _on_ack,
        # A retransmitted OACK: our DATA 1 was lost or is late; the timer covers both.
        (State.TRANSFERRING, OptionAck): TftpTransfer._ignore,
    }
