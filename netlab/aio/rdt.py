"""Opening reliable-transport streams, and serving many peers on one UDP socket.

Client: :func:`open_rdt_stream` binds a UDP socket, starts the connection's driver and returns
the stream once the handshake is complete, the way ``trio.open_tcp_stream`` does.  A TCP
connection lives on in the kernel after ``close()``; ours lives in its driver task.  With no
``nursery`` given, that task runs as a trio *system task*, so it finishes the closing handshake
(and lingers to answer a retransmitted FIN) even after the caller has moved on, and a caller's
``aclose()`` or a failure ends it.  Pass a nursery to keep it inside your own task tree instead.
A tiny receive loop hands the driver only what comes from the peer (anything else is counted and
dropped): a datagram socket is not connected, and anyone can write to it.

Server: :class:`RdtListener` runs one :class:`~netlab.aio.demux.PeerDemux` over its socket.  A
datagram from a new address opens a connection only if it is a well-formed SYN; anything else
from a stranger (garbage, a stray ACK, a FIN retransmitted after we forgot the peer) is dropped
and counted.  Each connection gets its driver task and, once the handshake completes, a handler
task with its stream; when the handler returns the stream is closed gracefully.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from netlab.addr import is_loopback
from netlab.aio.demux import DEFAULT_MAX_SESSIONS, PeerDemux, Session
from netlab.aio.endpoint import Addr, DatagramEndpoint, open_udp_endpoint
from netlab.aio.rdt_stream import DEFAULT_RECEIVE_BUFFER, RdtStream, socket_buffer_size
from netlab.transport.engine import Connection, Role, TransportParams
from netlab.transport.segment import SegmentType, decode_segment_untrusted

__all__ = ["Handler", "RdtListener", "bind_address_for", "open_rdt_stream", "resolve_udp"]

log = logging.getLogger(__name__)

#: What a server does with each established connection.
Handler = Callable[[RdtStream], Awaitable[None]]

INBOX_SIZE = 128  # datagrams queued for one connection's driver before drops (<= 8 MiB)


async def resolve_udp(host: str, port: int) -> Addr:
    """The first UDP address for ``host:port`` (a name is looked up once, not per datagram).

    Raises:
        OSError: the name does not resolve.
    """
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"no address for {host}")
    sockaddr = infos[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


def bind_address_for(peer_host: str) -> str:
    """Where a socket that talks to ``peer_host`` should be bound: loopback for a loopback peer
    (nothing off the host can reach it), else every address of the peer's family."""
    if is_loopback(peer_host):
        return "::1" if ":" in peer_host else "127.0.0.1"
    return "::" if ":" in peer_host else "0.0.0.0"


async def open_rdt_stream(
    host: str,
    port: int,
    params: TransportParams | None = None,
    *,
    endpoint: DatagramEndpoint | None = None,
    nursery: trio.Nursery | None = None,
    rng: random.Random | None = None,
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
) -> RdtStream:
    """Connect to the listener at ``host:port`` and return the established stream.

    Args:
        params: protocol, window, sequence bits, MSS, retry limit (defaults otherwise).
        endpoint: a socket to use (tests pass an in-memory one); by default a fresh UDP socket
            with buffers sized for the window, which the stream closes when it ends.
        nursery: where the driver runs; by default a system task (see the module docstring).
        rng: for the initial sequence number; unpredictable by default.

    Raises:
        trio.BrokenResourceError: the handshake failed (nothing listening, refused parameters).
        OSError: ``host`` does not resolve, or the socket cannot be made.
    """
    params = params or TransportParams()
    owned = endpoint is None
    if endpoint is None:
        peer = await resolve_udp(host, port)
        size = socket_buffer_size(params.window, params.mss)
        endpoint = await open_udp_endpoint(bind_address_for(peer[0]), 0, rcvbuf=size, sndbuf=size)
    else:
        peer = (host, port)
    connection = Connection(
        params, role=Role.CLIENT, rng=rng or random.SystemRandom(), now=trio.current_time()
    )
    stream = RdtStream(connection, endpoint, peer, receive_buffer=receive_buffer)
    run = partial(_run_client, stream, owned)
    if nursery is None:
        trio.lowlevel.spawn_system_task(run, name=f"rdt connection to {peer}")
    else:
        nursery.start_soon(run)
    try:
        await stream.wait_connected()
    except BaseException:
        stream.abort()
        raise
    return stream


async def _run_client(stream: RdtStream, owned: bool) -> None:
    """The client connection's two tasks: the peer filter and the driver."""
    try:
        send, receive = trio.open_memory_channel[bytes](INBOX_SIZE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_receive_from_peer, stream, send)
            await stream.drive(receive)
            nursery.cancel_scope.cancel()
    except Exception:
        # A system task must not crash the run; the stream already reports the failure.
        log.exception("driver of the connection to %s failed", stream.peer)
    finally:
        if owned:
            with trio.CancelScope(shield=True):
                await stream.endpoint.aclose()


async def _receive_from_peer(stream: RdtStream, inbox: trio.MemorySendChannel[bytes]) -> None:
    """Hand the driver what the peer sends; count and drop everyone else's datagrams."""
    endpoint, peer = stream.endpoint, stream.peer
    while True:
        data, addr = await endpoint.recvfrom()
        if addr != peer:
            stream.strangers_dropped += 1
            log.debug("dropped a datagram from stranger %s", addr)
            continue
        try:
            inbox.send_nowait(data)
        except trio.WouldBlock:
            stream.inbox_dropped += 1


class RdtListener:
    """Accepts reliable-transport connections from many peers on one socket.

    Args:
        endpoint: the bound socket (see :func:`socket_buffer_size` for its buffers).
        params: the limits this side accepts (window, sequence bits, MSS) and its timers.
        max_connections: concurrent connections; more are refused.
        queue_size: datagrams queued per connection before drops (counted by the demux).
        receive_buffer: bytes of received data held per stream (see :class:`RdtStream`).
        rng: for initial sequence numbers; unpredictable by default.
    """

    def __init__(
        self,
        endpoint: DatagramEndpoint,
        params: TransportParams | None = None,
        *,
        max_connections: int = DEFAULT_MAX_SESSIONS,
        queue_size: int = INBOX_SIZE,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
        rng: random.Random | None = None,
    ) -> None:
        self.params = params or TransportParams()
        self.demux = PeerDemux(endpoint, queue_size=queue_size, max_sessions=max_connections)
        self.handshakes_failed = 0
        self._receive_buffer = receive_buffer
        self._rng = rng or random.SystemRandom()

    @property
    def endpoint(self) -> DatagramEndpoint:
        return self.demux.endpoint

    async def serve(
        self,
        handler: Handler,
        *,
        stopping: trio.Event | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled, or until ``stopping`` is set and the open connections are done."""

        def accept(data: bytes, peer: Addr) -> Session | None:
            segment = decode_segment_untrusted(data)
            if segment is None or segment.type is not SegmentType.SYN:
                return None
            return partial(self._session, handler)

        await self.demux.serve(accept, stopping=stopping, task_status=task_status)

    async def _session(self, handler: Handler, peer: Addr, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        connection = Connection(self.params, role=Role.SERVER, rng=self._rng, now=trio.current_time())
        stream = RdtStream(connection, self.endpoint, peer, receive_buffer=self._receive_buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.drive, inbox)
            try:
                await stream.wait_connected()
            except trio.BrokenResourceError as exc:
                self.handshakes_failed += 1
                log.info("handshake with %s failed: %s", peer, exc)
                return
            try:
                await handler(stream)
            except BaseException:
                stream.abort()
                raise
            await stream.aclose()
