"""Driving one TFTP transfer on trio: the machine, its socket, its file.

Strategy: every transfer, on the server and on the client alike, owns one datagram endpoint
(RFC 1350 section 4: each side of a transfer picks a fresh transfer ID, a UDP port) and one
task running :func:`run_transfer`.  Since the endpoint carries this transfer only, the task
reads it directly; there is nothing to demultiplex.  The loop is the usual one for a datagram
machine: react to events, keep the machine fed, send what it wants sent, then wait for a
datagram or the machine's deadline.  The socket calls go through :mod:`netlab.aio.tftp_io`,
which skips trio's scheduler whenever the kernel can answer at once.

The transfer ID is checked here, at the socket: a datagram from any other address is answered
with ERROR 5 and otherwise ignored, so a stray or hostile packet cannot disturb the transfer
(RFC 1350 section 4).  A client does not know the server's transfer ID until the first reply,
which comes from a new port of the server's host; ``lock_peer=True`` adopts it.

File I/O runs in worker threads, a mebibyte at a time (:mod:`netlab.aio.tftp_files`); the file
being sent is read ahead by a task of its own.  A received file is stored durably before the
final ACK goes out: that ACK is the sender's proof of delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from netlab.aio.endpoint import Addr, DatagramEndpoint
from netlab.aio.tftp_files import CHUNK, FileSink, FileSource
from netlab.aio.tftp_io import transfer_io
from netlab.proto.tftp_packet import Error, ErrorCode, encode
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.proto.tftp_transfer import (
    Event,
    FinalBlockReceived,
    TransferComplete,
    TransferFailed,
)

__all__ = ["EndpointFactory", "TransferOutcome", "buffer_size", "run_transfer"]

log = logging.getLogger(__name__)

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
    return await _Driver(ep, peer, machine, source, sink, lock_peer, on_event).run()


class _Driver:
    def __init__(
        self,
        ep: DatagramEndpoint,
        peer: Addr,
        machine: TftpSender | TftpReceiver,
        source: FileSource | None,
        sink: FileSink | None,
        lock_peer: bool,
        on_event: Callable[[Event], None] | None,
    ) -> None:
        self.io = transfer_io(ep)
        self.peer = peer
        self.machine = machine
        self.sender = machine if isinstance(machine, TftpSender) and source is not None else None
        self.receiver = machine if isinstance(machine, TftpReceiver) and sink is not None else None
        self.source = source
        self.sink = sink
        self.lock_peer = lock_peer
        self.on_event = on_event
        self.final: TransferComplete | TransferFailed | None = None
        self.strangers = 0
        self.started = self.ended = trio.current_time()

    async def run(self) -> TransferOutcome:
        machine = self.machine
        async with trio.open_nursery() as nursery:
            if self.source is not None:
                nursery.start_soon(self.source.run)
            try:
                while True:
                    # The timer scope lives across many datagrams: a cancel scope per datagram
                    # would cost more than the rest of the loop.  Its deadline only ever moves
                    # earlier; if it fires early, handle_timer() finds nothing due and the next
                    # scope starts from the machine's current deadline.
                    with trio.CancelScope() as timer:
                        await self._pump(timer)
                    if not timer.cancelled_caught:
                        break  # the machine is closed and everything it had to say is sent
                    machine.handle_timer(trio.current_time())
            except BaseException:
                await self._abandon()
                raise
            finally:
                self.io.close()
            nursery.cancel_scope.cancel()  # the read-ahead, if the transfer ended early
        return self._outcome()

    async def _pump(self, timer: trio.CancelScope) -> None:
        """Events, file, datagrams, until the machine closes or the timer scope fires."""
        machine, sender, receiver, io = self.machine, self.sender, self.receiver, self.io
        # This loop runs once per datagram: bound methods in locals save attribute lookups.
        clock, next_event, outgoing = trio.current_time, machine.next_event, machine.datagrams_to_send
        get_timer, receive, incoming = machine.get_timer, io.receive, machine.receive_datagram
        armed = timer.deadline
        while True:
            while (event := next_event()) is not None:
                await self._on_event(event)
            while sender is not None and sender.wants_data:
                await self._feed(sender)
            if datagrams := outgoing(clock()):
                await io.send(datagrams, self.peer)
            if machine.closed:
                return
            deadline = get_timer()
            if deadline is not None and deadline < armed:
                timer.deadline = armed = deadline
            data, addr = await receive()
            if addr != self.peer and not await self._adopt_or_refuse(addr):
                continue
            incoming(data, clock())
            if receiver is not None and receiver.pending >= CHUNK:
                await self._write(receiver)

    async def _on_event(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if type(event) is FinalBlockReceived and self.receiver is not None:
            await self._store(self.receiver)
        elif type(event) is TransferComplete or type(event) is TransferFailed:
            self.final, self.ended = event, trio.current_time()

    async def _adopt_or_refuse(self, addr: Addr) -> bool:
        """A datagram from another address: the server's new transfer ID, or a stranger."""
        if self.lock_peer and addr[0] == self.peer[0]:
            self.peer, self.lock_peer = addr, False
            return True
        self.strangers += 1
        await self.io.send([_UNKNOWN_TID], addr)
        return False

    async def _feed(self, sender: TftpSender) -> None:
        assert self.source is not None
        with trio.CancelScope(shield=True):  # file work is not interrupted by the timer
            try:
                data = await self.source.read()
            except OSError as exc:
                log.warning("reading the file failed: %s", exc)
                sender.abort(ErrorCode.NOT_DEFINED, "read error")
                return
        if data:
            sender.feed(data)
        else:
            sender.end_of_data()

    async def _write(self, receiver: TftpReceiver, *, final: bool = False) -> None:
        assert self.sink is not None
        with trio.CancelScope(shield=True):
            try:
                await self.sink.write(receiver.take_data(), final=final)
            except OSError as exc:
                log.warning("writing the file failed: %s", exc)
                receiver.abort(ErrorCode.DISK_FULL, "write error")

    async def _store(self, receiver: TftpReceiver) -> None:
        """The final block is in: write the rest, store the file durably, then let the ACK go."""
        assert self.sink is not None
        await self._write(receiver, final=True)
        if receiver.closed:
            return
        with trio.CancelScope(shield=True):
            try:
                await self.sink.commit()
            except FileExistsError:
                receiver.abort(ErrorCode.FILE_EXISTS, "file already exists")
                return
            except OSError as exc:
                log.warning("storing the file failed: %s", exc)
                receiver.abort(ErrorCode.DISK_FULL, "could not store the file")
                return
        receiver.commit(trio.current_time())

    async def _abandon(self) -> None:
        """Cancelled (shutdown) or a bug: tell the peer, briefly, and keep nothing half-written."""
        self.machine.abort(ErrorCode.NOT_DEFINED, "transfer cancelled")
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_NOTICE_TIMEOUT):
            await self.io.send(self.machine.datagrams_to_send(trio.current_time()), self.peer)
        if self.sink is not None:
            self.sink.discard()

    def _outcome(self) -> TransferOutcome:
        size, final, duration = self.machine.bytes_transferred, self.final, self.ended - self.started
        if type(final) is TransferComplete:
            return TransferOutcome(True, size, strangers=self.strangers, duration=duration)
        if self.sink is not None:
            self.sink.discard()
        assert type(final) is TransferFailed, "a transfer closed without a final event"
        return TransferOutcome(False, size, final.error, final.by_peer, self.strangers, duration)
