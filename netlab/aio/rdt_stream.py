"""The reliable-transport connection as a trio stream, and the task that drives it.

Strategy: a :class:`netlab.transport.engine.Connection` is a sans-I/O machine; one task per
connection (:meth:`RdtStream.drive`) owns it and feeds it time and datagrams, exactly as DESIGN.md
draws a datagram session: send what the machine wants sent, hand events to the application,
then wait in ``trio.move_on_at(machine.get_timer())`` for the next datagram.  There is never a
task per timer: the machine keeps every retransmission deadline itself and reports the earliest.

The application talks to the :class:`RdtStream`, a ``trio.abc.HalfCloseableStream``.  Its
methods never do I/O: ``send_all`` queues bytes in the machine and *kicks* the driver, which
means cancelling the cancel scope the driver waits in (a few microseconds, and no second channel
to wait on), so the new segments leave at once.  Backpressure is the machine's send
buffer: ``send_all`` parks until ``send_buffer_free`` has room, and the driver unparks it when
acknowledgments free some.  Received bytes wait in a bounded buffer; when it is full the driver
leaves further data in the machine, whose advertised window then shrinks until the application
reads: a slow reader slows the sender down (flow control) instead of growing our memory.

Closing follows TCP: ``aclose()`` returns once both directions are done; the side that sent the
last ACK keeps answering a retransmitted FIN in TIME_WAIT for ``linger`` seconds, which is the
driver's business, not the application's.

Speed comes from batching, not from cleverness: after a wake-up the driver takes every datagram
already queued (up to :data:`MAX_BATCH`) before it asks the machine what to send, so one round of
cumulative acknowledgments answers a whole burst, and on loopback a large MSS keeps the
per-segment costs (a trio checkpoint ~4 us, a syscall, a CRC) small against the bytes moved.

A ``ConnectionFailed`` event (retry limit, RST, refused handshake) becomes
``trio.BrokenResourceError(reason)`` in whichever application call comes next.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math

import trio

from netlab.addr import format_hostport
from netlab.aio.endpoint import Addr, DatagramEndpoint
from netlab.transport.engine import Connection, ConnState
from netlab.transport.events import Closed, Connected, ConnectionFailed, DataReceived, EndOfData
from netlab.transport.segment import HEADER_SIZE

__all__ = ["DEFAULT_RECEIVE_BUFFER", "MAX_BATCH", "RdtStream", "socket_buffer_size"]

log = logging.getLogger(__name__)

DEFAULT_RECEIVE_BUFFER = 1 << 20  # bytes taken from the machine but not yet read (see _handle_events)
MAX_BATCH = 256  # datagrams taken per wake-up before the driver sends what they caused
MAX_SOCKET_BUFFER = 8 << 20  # bytes; the kernel caps requests at net.core.[rw]mem_max anyway
#: States in which both directions are complete: closed, failed, or lingering in TIME_WAIT.
_DONE = frozenset({ConnState.TIME_WAIT, ConnState.CLOSED, ConnState.FAILED})
_ABORT_GRACE = 1.0  # seconds a cancelled driver may spend telling the peer with a RST
_MIN_SEND_ROOM = 64 << 10  # bytes of send-buffer room worth waking a blocked send_all for
_SKB_OVERHEAD = 1024  # bytes the kernel charges per queued datagram beyond its payload (roughly)


def socket_buffer_size(window: int, mss: int) -> int:
    """Socket buffer bytes for ``window`` full segments in flight, with room to spare.

    The kernel charges a queued datagram more than its payload (the skb), and a burst can arrive
    while the previous one is still queued, so ask for two windows' worth.
    """
    return min(MAX_SOCKET_BUFFER, max(256 << 10, 2 * window * (mss + HEADER_SIZE + _SKB_OVERHEAD)))


class RdtStream(trio.abc.HalfCloseableStream):
    """One reliable-transport connection, as a trio stream.

    Made by :func:`netlab.aio.rdt.open_rdt_stream` (client) or handed to a handler by
    :class:`netlab.aio.rdt.RdtListener` (server); its driver task is started by them.

    Args:
        connection: the machine, in the role of this side.
        endpoint: the socket its datagrams leave from.
        peer: the remote address.
        receive_buffer: bytes of received data held for the application; beyond it, flow control.
    """

    def __init__(
        self,
        connection: Connection,
        endpoint: DatagramEndpoint,
        peer: Addr,
        *,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
    ) -> None:
        self.connection = connection
        self.endpoint = endpoint
        self.peer = peer
        self._receive_limit = receive_buffer
        # Application side.
        self._chunks: collections.deque[bytes] = collections.deque()
        self._head_offset = 0  # bytes of the first chunk already read
        self._buffered = 0
        self._eof_received = False
        self._eof_sent = False
        self._closed_locally = False
        self._sending = False
        self._receiving = False
        self._lot = trio.lowlevel.ParkingLot()  # application tasks waiting for the driver
        self._queued = 0  # bytes handed to the machine
        self._capacity = connection.send_buffer_free  # nothing is queued yet
        self._min_room = min(_MIN_SEND_ROOM, self._capacity)
        #: Datagrams dropped before the machine: from other addresses, or the inbox was full.
        self.strangers_dropped = 0
        self.inbox_dropped = 0
        # Driver side.
        self._wait: trio.CancelScope | None = None
        self._kicked = False
        self._connected = trio.Event()
        self._finished = trio.Event()
        self._failure: str | None = None
        self._last_free = -1

    # -- what the application sees ------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why the connection failed, or None."""
        return self._failure

    @property
    def bytes_acknowledged(self) -> int:
        """Bytes sent on this stream that the peer has acknowledged (for progress reports)."""
        return self._queued - (self._capacity - self.connection.send_buffer_free)

    @property
    def finished(self) -> bool:
        """The driver has stopped: the connection closed or failed."""
        return self._finished.is_set()

    async def wait_connected(self) -> None:
        """Return once the handshake is complete.

        Raises:
            trio.BrokenResourceError: the handshake failed (no answer, refused).
        """
        while not self._connected.is_set():
            if self._failure is not None or self._finished.is_set():
                raise trio.BrokenResourceError(self._failure or "connection closed during the handshake")
            await self._lot.park()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; waits while the send buffer is full (backpressure).

        Returning means the bytes are the machine's to deliver, not that they were acknowledged.

        Raises:
            trio.BrokenResourceError: the connection failed (the reason is the message).
            trio.ClosedResourceError: after ``send_eof()`` or ``aclose()``.
            trio.BusyResourceError: another task is already sending.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            view = memoryview(data).cast("B")
            self._check_sendable()
            while view:
                free = self.connection.send_buffer_free
                # Wait for a useful amount of room rather than trickling in slivers.
                if free < min(len(view), self._min_room):
                    await self._lot.park()
                    self._check_sendable()
                    continue
                n = min(free, len(view))
                self.connection.send(bytes(view[:n]))
                self._queued += n
                view = view[n:]
                self._kick()
            await trio.lowlevel.checkpoint()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        while self.connection.send_buffer_free <= 0 and self._failure is None and not self._closed_locally:
            await self._lot.park()
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close: a FIN follows the queued bytes; the peer's direction stays open.

        Raises:
            trio.BrokenResourceError: the connection failed.
            trio.BusyResourceError: a ``send_all`` is in progress.
        """
        if self._sending:
            raise trio.BusyResourceError("send_eof while another task is sending")
        if not self._eof_sent:
            self._check_sendable()
            self._eof_sent = True
            self.connection.send_eof()
            self._kick()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the peer in order; ``b""`` once the peer has sent EOF and all was read.

        Raises:
            trio.BrokenResourceError: the connection failed before the peer's EOF.
            trio.ClosedResourceError: after ``aclose()``.
            trio.BusyResourceError: another task is already receiving.
        """
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            while not self._chunks:
                if self._closed_locally:
                    raise trio.ClosedResourceError("the stream was closed")
                if self._eof_received:
                    await trio.lowlevel.checkpoint()
                    return b""
                if self._failure is not None:
                    raise trio.BrokenResourceError(self._failure)
                if self._finished.is_set():
                    raise trio.BrokenResourceError("the connection ended without the peer's EOF")
                await self._lot.park()
            head, start = self._chunks[0], self._head_offset
            end = len(head) if max_bytes is None else min(len(head), start + max_bytes)
            # Slice only what is returned: small reads of a large segment stay linear.
            chunk = head if start == 0 and end == len(head) else head[start:end]
            if end == len(head):
                self._chunks.popleft()
                self._head_offset = 0
            else:
                self._head_offset = end
            was_full = self._buffered >= self._receive_limit
            self._buffered -= len(chunk)
            if was_full and self._buffered < self._receive_limit:
                self._kick()  # the driver left data in the machine; take it now
            await trio.lowlevel.checkpoint()
            return chunk
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Close gracefully: EOF if not yet sent, then wait until the peer has closed too.

        Received data nobody will read is discarded.  Returns once both directions are done
        (the driver may go on lingering in TIME_WAIT).  Cancelling this call aborts the
        connection (the peer gets a RST).
        """
        if self._closed_locally:
            await trio.lowlevel.checkpoint()
            return
        self._closed_locally = True
        self._chunks.clear()
        self._head_offset = 0
        self._buffered = 0
        self._lot.unpark_all()
        try:
            if self.connection.state not in _DONE:
                if not self._eof_sent:
                    self._eof_sent = True
                    self.connection.send_eof()
                self._kick()
            while self.connection.state not in _DONE and not self._finished.is_set():
                await self._lot.park()
            await trio.lowlevel.checkpoint()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Reset the connection now (RST); pending data is lost.  Does nothing once it is done."""
        if self.connection.state not in _DONE:
            self._failure = self._failure or "the connection was aborted"
            self.connection.abort()
            self._kick()

    def _check_sendable(self) -> None:
        if self._failure is not None:
            raise trio.BrokenResourceError(self._failure)
        if self._closed_locally or self._eof_sent:
            raise trio.ClosedResourceError("the sending direction was closed")
        if self._finished.is_set():
            raise trio.BrokenResourceError("the connection is closed")

    # -- the driver ---------------------------------------------------------------------------

    def _kick(self) -> None:
        """Make the driver run a round now (the application changed something)."""
        self._kicked = True
        if self._wait is not None:
            self._wait.cancel()

    async def drive(self, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        """Run the connection until it closes or fails; the one task that touches the machine.

        The opener starts it (:func:`netlab.aio.rdt.open_rdt_stream`, :class:`RdtListener`);
        ``inbox`` carries the peer's datagrams.
        """
        conn = self.connection
        try:
            while True:
                self._kicked = False
                for datagram in conn.datagrams_to_send(trio.current_time()):
                    await self.endpoint.sendto(datagram, self.peer)
                self._handle_events()
                if conn.closed:
                    return
                if self._kicked:
                    continue  # the application acted while we were sending
                timer = conn.get_timer()
                with trio.CancelScope(deadline=math.inf if timer is None else timer) as self._wait:
                    conn.receive_datagram(await inbox.receive(), trio.current_time())
                    self._receive_ready(inbox)
                self._wait = None
                now = trio.current_time()
                timer = conn.get_timer()
                if timer is not None and now >= timer:
                    conn.handle_timer(now)
        except trio.EndOfChannel:
            self._failure = "the listener stopped"
        except OSError as exc:
            # The socket itself refuses (no route, a bad address): nothing more can be sent.
            self._failure = f"cannot send to {format_hostport(*self.peer)}: {exc.strerror or exc}"
            conn.abort()
        except BaseException:
            await self._reset_on_the_way_out()
            raise
        finally:
            self._wait = None
            self._handle_events(drain=True)
            self._finished.set()
            self._lot.unpark_all()

    def _receive_ready(self, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        """Take the datagrams that are already queued, so one send round answers them all."""
        for _ in range(MAX_BATCH):
            try:
                data = inbox.receive_nowait()
            except trio.WouldBlock:
                return
            self.connection.receive_datagram(data, trio.current_time())

    def _handle_events(self, *, drain: bool = False) -> None:
        """Take the machine's events, wake the application if anything changed.

        Received data is taken only while the stream's own buffer has room: what stays in the
        machine counts against the window it advertises, which is how a slow reader slows the
        sender down (flow control) instead of growing our memory.
        """
        conn = self.connection
        changed = False
        while drain or self._closed_locally or self._buffered < self._receive_limit:
            event = conn.next_event()
            if event is None:
                break
            changed = True
            if isinstance(event, DataReceived):
                if not self._closed_locally:
                    self._chunks.append(event.data)
                    self._buffered += len(event.data)
            elif isinstance(event, Connected):
                self._connected.set()
            elif isinstance(event, EndOfData):
                self._eof_received = True
            elif isinstance(event, ConnectionFailed):
                self._failure = event.reason
                log.debug("connection with %s failed: %s", self.peer, event.reason)
            elif isinstance(event, Closed):
                log.debug("connection with %s closed", self.peer)
        free = conn.send_buffer_free
        if changed or free != self._last_free or conn.state in _DONE:
            self._last_free = free
            self._lot.unpark_all()

    async def _reset_on_the_way_out(self) -> None:
        """The driver is being cancelled: tell the peer with a RST rather than let it time out.

        Not while lingering: both directions are complete then, and, like a process that exits
        during TCP's TIME_WAIT, we simply stop answering.
        """
        if self.connection.closed or self.connection.state is ConnState.TIME_WAIT:
            return
        self.connection.abort()
        if self._failure is None:
            self._failure = "the connection was cancelled"
        with trio.CancelScope(shield=True), trio.move_on_after(_ABORT_GRACE), contextlib.suppress(OSError):
            for datagram in self.connection.datagrams_to_send(trio.current_time()):
                await self.endpoint.sendto(datagram, self.peer)
