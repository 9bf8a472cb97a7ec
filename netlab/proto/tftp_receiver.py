"""The receiving side of a TFTP transfer (RFC 1350, windowed per RFC 7440).

Strategy: the receiver accepts only the next block in order and discards everything else, as
RFC 7440 section 4 has it (no reassembly buffer: the sender goes back to the first missing
block).  Accepted payloads collect in a ``bytearray`` that the driver drains with
:meth:`take_data` and writes to the file in large pieces.

When it acknowledges:

* after ``windowsize`` blocks in order (with a windowsize of 1, after every block: lockstep);
* at once, when a block arrives out of order or a duplicate arrives: the ACK names the last
  block received in order, so the sender restarts from the first missing one without waiting
  for its timer (RFC 7440 section 4).  Only the first such stray of each window-full is answered,
  so a retransmitted window of duplicates costs one ACK, not ``windowsize`` of them;
* on its own timer, repeating the last ACK (RFC 1350: both sides retransmit on timeout), with
  the interval doubling while nothing arrives, as the sender's does;
* the final block (the first one shorter than blksize) is acknowledged only when the driver
  calls :meth:`commit` to say the file is durably stored: the final ACK is the sender's proof of
  delivery.  The receiver then dallies (RFC 1350 section 6): for a while it re-sends the final
  ACK whenever the final DATA comes again, in case its ACK was lost.

A transfer that exceeds ``max_size`` is stopped with ERROR 3 before the excess is delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from netlab.proto.tftp_options import TransferOptions
from netlab.proto.tftp_packet import (
    Data,
    Error,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    OptionAck,
    Request,
    encode,
    encode_ack,
)
from netlab.proto.tftp_transfer import (
    BLOCKS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    FinalBlockReceived,
    PacketHandler,
    State,
    TftpTransfer,
    TransferComplete,
)

__all__ = ["TftpReceiver"]


class TftpReceiver(TftpTransfer):
    """Receives one file: the client's half of a read request, the server's half of a write."""

    def __init__(
        self,
        state: State,
        options: TransferOptions,
        *,
        opening: bytes,
        requested: Mapping[str, str] | None = None,
        max_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        dally: float | None = None,
    ) -> None:
        super().__init__(state, options, timeout=timeout, retries=retries)
        self._requested = dict(requested or {})
        self._max_size = max_size
        self._dally = self._interval if dally is None else dally
        self._expected = 1  # the next block in order (unbounded; the wire number is & 0xFFFF)
        self._since_ack = 0  # blocks accepted since the last ACK
        self._strays = 0  # out-of-order or duplicate blocks since the last block in order
        self._data = bytearray()
        self._total = 0
        self._last = opening  # what the timer repeats: the request, the OACK or the last ACK
        self._queue(opening, rearm=self._interval)

    @classmethod
    def client(
        cls,
        filename: str,
        mode: str,
        requested: Mapping[str, str],
        *,
        max_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        dally: float | None = None,
    ) -> TftpReceiver:
        """A client reading ``filename``: sends the RRQ with the ``requested`` options."""
        rrq = encode(Request(Opcode.RRQ, filename, mode, dict(requested)))
        return cls(
            State.REQUESTING,
            TransferOptions(),
            opening=rrq,
            requested=requested,
            max_size=max_size,
            timeout=timeout,
            retries=retries,
            dally=dally,
        )

    @classmethod
    def server(
        cls,
        options: TransferOptions,
        oack: Mapping[str, str],
        *,
        max_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        dally: float | None = None,
    ) -> TftpReceiver:
        """A server answering a write request: OACK if options were accepted, else ACK 0."""
        opening = encode(OptionAck(dict(oack))) if oack else encode_ack(0)
        return cls(
            State.TRANSFERRING,
            options,
            opening=opening,
            max_size=max_size,
            timeout=timeout,
            retries=retries,
            dally=dally,
        )

    # -- the data sink -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Bytes received in order and not yet taken by :meth:`take_data`."""
        return len(self._data)

    def take_data(self) -> bytes:
        """The bytes received in order since the last call (as on the wire)."""
        data = bytes(self._data)
        self._data.clear()
        return data

    @property
    def bytes_transferred(self) -> int:
        return self._total

    def commit(self, now: float) -> None:
        """The driver has stored the whole file: send the final ACK and start dallying.

        Raises:
            LocalProtocolError: there was no :class:`FinalBlockReceived` to answer.
        """
        if self.state is not State.COMMITTING:
            raise LocalProtocolError(f"commit() while {self.state.value}")
        self._ack(now)
        self._events.append(TransferComplete(self._total))
        self.state = State.DALLYING
        self._deadline = now + self._dally
        if self._dally <= 0:
            self.state = State.COMPLETE
            self._deadline = None

    # -- machine -------------------------------------------------------------------------------

    def _ack(self, now: float) -> None:
        self._last = encode_ack(self._expected - 1)
        self._out.append(self._last)
        self._since_ack = 0
        if self.state is not State.DALLYING:  # the dally ends when it ends
            self._deadline = now + self._rto.rto

    def _on_timeout(self, now: float) -> None:
        # Back off like the sender does, so that a receiver never gives up before a sender
        # whose retransmissions are backing off (RFC 6298 section 5.5).
        self._rto.backoff()
        self._queue(self._last, rearm=self._rto.rto)

    def _on_data(self, data: Data, now: float) -> None:
        blksize = self.options.blksize
        payload = data.payload
        if len(payload) > blksize:
            self._refuse(ErrorCode.ILLEGAL_OPERATION, f"DATA of {len(payload)} octets > blksize")
            return
        if data.block != BLOCKS.wrap(self._expected):
            self._on_stray(now)
            return
        self._expected += 1
        self._retries = self._strays = 0
        self._rto.progress()  # data is flowing again: the next silence is timed from scratch
        if self._max_size is not None and self._total + len(payload) > self._max_size:
            self._refuse(ErrorCode.DISK_FULL, f"file exceeds the limit of {self._max_size} bytes")
            return
        self._data += payload
        self._total += len(payload)
        if len(payload) < blksize:
            self.state = State.COMMITTING
            self._deadline = self._arm = None
            self._events.append(FinalBlockReceived(self._total))
            return
        self._since_ack += 1
        if self._since_ack >= self.options.windowsize:
            self._ack(now)
        else:
            self._deadline = now + self._rto.rto  # the rest of the window is on its way

    def _on_stray(self, now: float) -> None:
        """A block out of order or a duplicate: ACK the last block received in order, once per
        window-full of strays."""
        if self._strays % self.options.windowsize == 0:
            self._ack(now)
        self._strays += 1

    def _on_stray_data(self, data: Data, now: float) -> None:
        self._on_stray(now)

    def _on_repeated_oack(self, oack: OptionAck, now: float) -> None:
        """The server repeats its OACK: our ACK 0 was lost.  Repeat it, if nothing came since."""
        if self._expected == 1:
            self._on_stray(now)

    def _on_first_reply(self, packet: OptionAck | Data, now: float) -> None:
        """Client: the server's answer to our RRQ, an OACK or (options ignored) DATA 1."""
        if not self._settle_options(self._requested, None if isinstance(packet, Data) else packet):
            return
        if isinstance(packet, Data):
            self._on_data(packet, now)
        else:
            self._ack(now)  # ACK 0 accepts the OACK (RFC 2347 section 2)

    def _on_error(self, error: Error) -> None:
        if self.state is State.DALLYING:
            # The sender gave up on our final ACK after all; the file is stored regardless.
            self.state = State.COMPLETE
            self._deadline = None
            return
        super()._on_error(error)

    _HANDLERS: ClassVar[dict[tuple[State, type], PacketHandler]] = {
        (State.REQUESTING, OptionAck): _on_first_reply,
        (State.REQUESTING, Data): _on_first_reply,
        (State.TRANSFERRING, Data): _on_data,
        (State.TRANSFERRING, OptionAck): _on_repeated_oack,
        # Storing the file: the sender's repeats of the final block wait for the commit.
        (State.COMMITTING, Data): TftpTransfer._ignore,
        (State.COMMITTING, OptionAck): TftpTransfer._ignore,
        (State.DALLYING, Data): _on_stray_data,
        (State.DALLYING, OptionAck): TftpTransfer._ignore,
    }
