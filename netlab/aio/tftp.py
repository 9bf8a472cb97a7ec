"""Driving one TFTP transfer on trio: the machine, its socket, its file.

Strategy: every transfer, on the server and on the client alike, owns one datagram endpoint
(RFC 1350 section 4: each side of a transfer picks a fresh transfer ID, a UDP port) and one
task running :func:`run_transfer`.  Since the endpoint carries this transfer only, the task
reads it directly; there is nothing to demultiplex.  The loop is the usual one for a datagram
machine: react to events, keep the machine fed, send what it wants sent, then wait for a
datagram or the machine's deadline with ``trio.move_on_at``.

The transfer ID is checked here, at the socket: a datagram from any other address is answered
with ERROR 5 and otherwise ignored, so a stray or hostile packet cannot disturb the transfer
(RFC 1350 section 4).  A client does not know the server's transfer ID until the first reply,
which comes from a new port of the server's host; ``lock_peer=True`` adopts it.

File I/O runs in worker threads, in large pieces: :class:`FileSource` reads what the sender asks
for (at least 256 KiB at a time), :class:`FileSink` writes the receiver's data once a piece has
collected and stores the file atomically (:class:`netlab.store.atomic.AtomicFile`) before the
final ACK goes out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import trio

from netlab.aio.endpoint import Addr, DatagramEndpoint
from netlab.proto.tftp_netascii import NetasciiDecoder, netascii_encode
from netlab.proto.tftp_packet import Error, ErrorCode, encode
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.proto.tftp_transfer import (
    Event,
    FinalBlockReceived,
    TransferComplete,
    TransferFailed,
)
from netlab.store.atomic import AtomicFile

__all__ = [
    "EndpointFactory",
    "FileSink",
    "FileSource",
    "TransferOutcome",
    "buffer_size",
    "run_transfer",
]

log = logging.getLogger(__name__)

WRITE_CHUNK = 256 * 1024  # bytes collected before a write to the file
SHUTDOWN_NOTICE_TIMEOUT = 0.5  # seconds spent telling the peer a cancelled transfer is over
_UNKNOWN_TID = encode(Error(ErrorCode.UNKNOWN_TID, "unknown transfer ID"))


class EndpointFactory(Protocol):
    """``open_udp_endpoint`` or its in-memory stand-in: binds a fresh transfer ID."""

    async def __call__(
        self, host: str, port: int = 0, *, rcvbuf: int | None = None, sndbuf: int | None = None
    ) -> DatagramEndpoint: ...


def buffer_size(blksize: int, windowsize: int) -> int:
    """Socket buffer bytes for a window of DATA packets.

    The kernel charges each datagram its buffer's true size, not its payload (about 2.3 KiB for
    a 1.4 KiB datagram on loopback), and a window that overflows the default 208 KiB buffer is
    dropped by our own host.  Twice the payload plus a generous per-packet overhead covers it.
    """
    return min(8 << 20, max(256 << 10, 2 * windowsize * (blksize + 4 + 1024)))


class FileSource:
    """The sender's file, read in worker threads; netascii translated on the way."""

    def __init__(self, file: BinaryIO, *, netascii: bool = False) -> None:
        self._file = file
        self._netascii = netascii

    async def read(self, size: int) -> bytes:
        data = await trio.to_thread.run_sync(self._file.read, size)
        return netascii_encode(data) if self._netascii and data else data

    def close(self) -> None:
        self._file.close()


class FileSink:
    """The receiver's file: written in worker threads, stored atomically on commit."""

    def __init__(self, file: AtomicFile, *, netascii: bool = False) -> None:
        self.file = file
        self._decoder = NetasciiDecoder() if netascii else None

    async def write(self, data: bytes, *, final: bool = False) -> None:
        if self._decoder is not None:
            data = self._decoder.decode(data, final=final)
        if data:
            await trio.to_thread.run_sync(self.file.write, data)

    async def commit(self) -> None:
        await trio.to_thread.run_sync(self.file.commit)

    def discard(self) -> None:
        self.file.discard()


@dataclass(frozen=True)
class TransferOutcome:
    """How a transfer ended."""

    ok: bool
    size: int  # octets carried on the wire
    error: Error | None = None  # why it failed
    by_peer: bool = False  # the peer sent the error (else we did, or we timed out)
    strangers: int = 0  # datagrams from wrong transfer IDs, answered with ERROR 5
    #: Seconds from the start until the transfer completed or failed (a receiver's dally after
    #: its final ACK is not counted).
    duration: float = 0.0

    def describe(self) -> str:
        """``ok``, or the error and who raised it, for logs and messages."""
        if self.ok:
            return "ok"
        return f"{'peer ' if self.by_peer else ''}{self.error}"


async def run_transfer(
    ep: DatagramEndpoint,
    peer: Addr,
    machine: TftpSender | TftpReceiver,
    *,
    source: FileSource | None = None,
    sink: FileSink | None = None,
    lock_peer: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> TransferOutcome:
    """Run ``machine`` to its end on ``ep``, talking to ``peer``.

    Args:
        source: the file a :class:`TftpSender` sends.
        sink: the file a :class:`TftpReceiver` stores; discarded unless the transfer completes.
        lock_peer: the client's case: ``peer`` is the server's request address, and the first
            reply from that host, whatever its port, fixes the server's transfer ID.
        on_event: sees every event of the machine (the client uses it for the negotiated size).
    """
    clock = trio.current_time
    sender = machine if isinstance(machine, TftpSender) else None
    receiver = machine if isinstance(machine, TftpReceiver) else None
    final: TransferComplete | TransferFailed | None = None
    strangers = 0
    started = ended = clock()
    try:
        while True:
            while (event := machine.next_event()) is not None:
                if on_event is not None:
                    on_event(event)
                if type(event) is FinalBlockReceived and receiver is not None and sink is not None:
                    await _store(receiver, sink)
                elif type(event) is TransferComplete or type(event) is TransferFailed:
                    final, ended = event, clock()
            while sender is not None and source is not None and (wanted := sender.data_wanted):
                await _feed(sender, source, wanted)
            for datagram in machine.datagrams_to_send(clock()):
                await ep.sendto(datagram, peer)
            if machine.closed:
                break
            deadline = machine.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                data, addr = await ep.recvfrom()
            if scope.cancelled_caught:
                machine.handle_timer(clock())
                continue
            if addr != peer:
                if lock_peer and addr[0] == peer[0]:
                    peer, lock_peer = addr, False
                else:
                    strangers += 1
                    await ep.sendto(_UNKNOWN_TID, addr)
                    continue
            machine.receive_datagram(data, clock())
            if receiver is not None and sink is not None and receiver.pending >= WRITE_CHUNK:
                await _write(receiver, sink)
    except BaseException:
        # Cancelled (shutdown) or a bug: tell the peer, briefly, and keep nothing half-written.
        machine.abort(ErrorCode.NOT_DEFINED, "transfer cancelled")
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_NOTICE_TIMEOUT):
            for datagram in machine.datagrams_to_send(clock()):
                await ep.sendto(datagram, peer)
        if sink is not None:
            sink.discard()
        raise
    size = machine.bytes_transferred
    if type(final) is TransferComplete:
        return TransferOutcome(True, size, strangers=strangers, duration=ended - started)
    if sink is not None:
        sink.discard()
    if type(final) is TransferFailed:
        return TransferOutcome(False, size, final.error, final.by_peer, strangers, ended - started)
    raise AssertionError("a transfer closed without a final event")  # pragma: no cover


async def _feed(machine: TftpSender, source: FileSource, wanted: int) -> None:
    try:
        data = await source.read(wanted)
    except OSError as exc:
        log.warning("reading the file failed: %s", exc)
        machine.abort(ErrorCode.NOT_DEFINED, "read error")
        return
    if data:
        machine.feed(data)
    else:
        machine.end_of_data()


async def _write(machine: TftpReceiver, sink: FileSink, *, final: bool = False) -> None:
    try:
        await sink.write(machine.take_data(), final=final)
    except OSError as exc:
        log.warning("writing the file failed: %s", exc)
        machine.abort(ErrorCode.DISK_FULL, "write error")


async def _store(machine: TftpReceiver, sink: FileSink) -> None:
    """The final block is in: write the rest, store the file durably, then let the ACK go."""
    await _write(machine, sink, final=True)
    if machine.closed:
        return
    try:
        await sink.commit()
    except FileExistsError:
        machine.abort(ErrorCode.FILE_EXISTS, "file already exists")
        return
    except OSError as exc:
        log.warning("storing the file failed: %s", exc)
        machine.abort(ErrorCode.DISK_FULL, "could not store the file")
        return
    machine.commit(trio.current_time())
