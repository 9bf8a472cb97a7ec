"""The sending side of a TFTP transfer (RFC 1350, windowed per RFC 7440).

Strategy: the window is the transport core's :class:`~netlab.transport.window.SendWindow`, the
same one Go-Back-N uses, holding the encoded DATA packets in flight with their send times and
Karn flags; block numbers are counted without bound and wrapped to 16 bits only on the wire.
The file's bytes not yet in a packet wait in one ``bytearray``: a DATA packet is a precompiled
header plus a memoryview slice of it, and cutting a block off its front is O(1).  The driver
keeps it filled: while :attr:`wants_data` is true (less than two windows buffered) it
:meth:`feed`\\ s the next piece of the file, then calls :meth:`end_of_data`.  The final block is
the first one shorter than blksize, possibly empty.

The window is Go-Back-N, as RFC 7440 section 4 describes it: send ``windowsize`` blocks, wait for
one ACK.  An ACK for block ``n`` means every block up to ``n`` arrived and the receiver discarded
whatever came after a gap, so the blocks after ``n`` still in flight go again at once, and the
window refills behind them.  A windowsize of 1 is RFC 1350's lockstep.

Retransmission happens on timeout.  A duplicate ACK (for a block already acknowledged) is never
answered in lockstep: answering it is the Sorcerer's Apprentice bug (RFC 1123 section 4.2.3.1),
where every duplicate doubles the traffic.  With a window, a duplicate ACK is the receiver's RFC
7440 signal that the first block of the window went missing; it is answered with one early
retransmission per window position, so duplicated ACKs cannot multiply anything.  The timer
adapts to measured round trips (RFC 6298, with Karn's rule) unless a timeout was negotiated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from netlab.proto.tftp_options import TransferOptions
from netlab.proto.tftp_packet import (
    Ack,
    LocalProtocolError,
    Opcode,
    OptionAck,
    Request,
    encode,
    encode_data,
)
from netlab.proto.tftp_transfer import (
    BLOCKS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    PacketHandler,
    State,
    TftpTransfer,
    TransferComplete,
)
from netlab.transport.window import SendWindow, WindowRule

__all__ = ["TftpSender"]

#: Blocks between two RTT samples.  One timed block per round trip is what TCP does without
#: timestamps; in lockstep that would be every block, and the estimator needs far fewer.
SAMPLE_SPACING = 16


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
        self._buf = bytearray()  # the file from block _window.next onward
        self._eof = False
        self._final: int | None = None  # the final block's number, once it is in a packet
        self._size = 0  # the file's size on the wire, once the final block is known
        self._sample_from = 1  # the first block whose acknowledgment may give an RTT sample
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
        # RFC 7440 receivers accept only the next block, so this is the cumulative rule: any
        # windowsize up to 65535 is unambiguous with 16-bit block numbers.
        self._window = SendWindow[bytes](BLOCKS, options.windowsize, WindowRule.CUMULATIVE, base=1)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.state is State.TRANSFERRING:
            self._fill_window(now)
        return super().datagrams_to_send(now)

    def _fill_window(self, now: float) -> None:
        """Put new blocks in flight while the window has room and the buffer has them."""
        window, blksize, buf = self._window, self.options.blksize, self._buf
        if self._final is not None or window.full:
            return
        taken = 0
        with memoryview(buf) as view:
            while not window.full:
                with view[taken : taken + blksize] as chunk:  # released before buf shrinks
                    size = len(chunk)
                    if size < blksize and not self._eof:
                        break  # the rest of this block has not been read yet
                    packet = encode_data(window.next, chunk)
                taken += size
                self._out.append(packet)
                block = window.push(packet, now)
                if size < blksize:
                    self._final = block
                    self._size = (block - 1) * blksize + size
                    break
        if taken or self._final is not None:
            del buf[:taken]
            self._deadline = now + self._current_rto

    def _resend_in_flight(self, now: float) -> None:
        """Go-Back-N: everything still in flight goes again, oldest first."""
        window = self._window
        for block in list(window.pending()):
            self._out.append(window.mark_retransmitted(block, now).item)
        if window.in_flight:
            self._deadline = now + self._current_rto

    def _on_timeout(self, now: float) -> None:
        self._rto.backoff()  # RFC 6298 section 5.5
        self._current_rto = self._rto.rto
        if self.state is not State.TRANSFERRING:
            assert self._opening is not None
            self._queue(self._opening, rearm=self._current_rto)
            return
        self._resend_in_flight(now)

    def _on_ack(self, ack: Ack, now: float) -> None:
        window = self._window
        # ACK n acknowledges every block up to n: the window's base moves to n + 1.
        end = window.unwrap_ack(BLOCKS.wrap(ack.block + 1))
        if end is None:
            return  # a stale ACK from an earlier window, delayed in the network
        if end == window.base:
            self._on_duplicate_ack(now)
            return
        newest = window.ack_through(end)[-1]
        if self._adaptive and end - 1 >= self._sample_from and not newest.retransmitted:
            self._rto.sample(now - newest.sent_at)  # Karn: only never-retransmitted blocks
            self._sample_from = end - 1 + SAMPLE_SPACING
            self._current_rto = self._rto.rto
        elif self._rto.backoffs:
            self._rto.progress()  # new data acknowledged: the path delivers, end the backoff
            self._current_rto = self._rto.rto
        self._retries = 0
        self._dup_answered = False
        self._deadline = None  # re-armed when the next window goes out
        if self._final is not None and end > self._final:
            self._acked_bytes = self._size
            self.state = State.COMPLETE
            self._events.append(TransferComplete(self._size))
            return
        self._acked_bytes = (end - 1) * self.options.blksize  # all blocks but the final are full
        if window.in_flight:
            self._resend_in_flight(now)  # an ACK inside the window: the receiver dropped these

    def _on_duplicate_ack(self, now: float) -> None:
        if self.options.windowsize == 1 or self._dup_answered or not self._window.in_flight:
            return  # RFC 1123 4.2.3.1: never answer a duplicate ACK in lockstep
        self._dup_answered = True
        self._resend_in_flight(now)

    def _on_oack_ack(self, ack: Ack, now: float) -> None:
        """Server: ACK 0 accepts our OACK (RFC 2347 section 2); DATA 1 may go."""
        if ack.block == 0:
            self.state = State.TRANSFERRING
            self._deadline = self._arm = None
            self._retries = 0
            self._rto.progress()
            self._current_rto = self._rto.rto

    def _on_first_reply(self, packet: OptionAck | Ack, now: float) -> None:
        """Client: the server's answer to our WRQ, an OACK or a plain ACK 0."""
        if isinstance(packet, Ack) and packet.block != 0:
            return
        if not self._settle_options(self._requested, None if isinstance(packet, Ack) else packet):
            return

    _HANDLERS: ClassVar[dict[tuple[State, type], PacketHandler]] = {
        (State.REQUESTING, OptionAck): _on_first_reply,
        (State.REQUESTING, Ack): _on_first_reply,
        (State.NEGOTIATING, Ack): _on_oack_ack,
        (State.TRANSFERRING, Ack): _on_ack,
        # A retransmitted OACK: our DATA 1 was lost or is late; the timer covers both.
        (State.TRANSFERRING, OptionAck): TftpTransfer._ignore,
    }
