"""Datagram endpoints: the one seam between datagram drivers and the network.

Every datagram driver (RDT, TFTP, DNS, the link relay) talks to a :class:`DatagramEndpoint`:
``sendto``, ``recvfrom``, ``local_address``, ``aclose``.  There are two implementations:

* :class:`UdpEndpoint`, a real trio UDP socket, for programs and real-socket tests;
* :class:`MemoryEndpoint`, bound on a :class:`MemoryNetwork`, for driver tests under trio's
  ``MockClock``.  A network may be given a *route* function that decides, per datagram, what
  arrives and when: nothing (loss), several copies (duplication), altered bytes (corruption), or
  a delay (which reorders).  ``netlab.link`` provides the seeded impairment model behind it.

Like real UDP, a full receive queue drops the datagram and counts it; a sender never blocks.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import socket as _stdsocket
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol, Self

import trio

__all__ = [
    "Addr",
    "DatagramEndpoint",
    "MemoryEndpoint",
    "MemoryNetwork",
    "Route",
    "UdpEndpoint",
    "open_udp_endpoint",
]

Addr = tuple[str, int]
#: Decides the fate of one datagram: ``route(data, src, dst, now)`` returns the deliveries,
#: each ``(delay_seconds, payload)``.  An empty result is a loss.
Route = Callable[[bytes, Addr, Addr, float], Iterable[tuple[float, bytes]]]

MAX_DATAGRAM = 65536  # bytes; larger than any UDP payload over IPv4 or IPv6 without jumbograms


class DatagramEndpoint(Protocol):
    """What a datagram driver needs from a socket."""

    @property
    def local_address(self) -> Addr: ...

    async def sendto(self, data: bytes, addr: Addr) -> None: ...

    async def recvfrom(self) -> tuple[bytes, Addr]: ...

    async def aclose(self) -> None: ...


class UdpEndpoint:
    """A bound trio UDP socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._local: Addr = (host, port)

    @property
    def local_address(self) -> Addr:
        return self._local

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._sock

    async def sendto(self, data: bytes, addr: Addr) -> None:
        # An ICMP port-unreachable from an earlier datagram, or a full send buffer: UDP
        # promises nothing, and the protocol above retransmits.
        with contextlib.suppress(ConnectionRefusedError, BlockingIOError):
            await self._sock.sendto(data, addr)

    async def recvfrom(self) -> tuple[bytes, Addr]:
        while True:
            try:
                data, addr = await self._sock.recvfrom(MAX_DATAGRAM)
            except ConnectionRefusedError:
                # Linux reports an ICMP error for an earlier sendto on the next receive.
                continue
            return data, (addr[0], addr[1])

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()


async def open_udp_endpoint(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
    reuse_port: bool = False,
) -> UdpEndpoint:
    """Bind a UDP socket on ``host:port`` (port 0: any free port).

    ``rcvbuf``/``sndbuf`` size the kernel buffers; a windowed protocol asks for room for a whole
    window so a burst is not dropped by our own host (the kernel may cap the value).
    """
    family = _stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET
    sock = trio.socket.socket(family, _stdsocket.SOCK_DGRAM)
    try:
        if rcvbuf:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_SNDBUF, sndbuf)
        if reuse_port:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return UdpEndpoint(sock)


class MemoryNetwork:
    """An in-process datagram network for driver tests.

    Use it as an async context manager: it runs the task that delivers delayed datagrams.
    ``queue_size`` is each endpoint's receive queue, in datagrams.
    """

    def __init__(self, route: Route | None = None, *, queue_size: int = 256) -> None:
        self._route = route
        self._queue_size = queue_size
        self._endpoints: dict[Addr, MemoryEndpoint] = {}
        self._ports = itertools.count(40000)
        self._pending: list[tuple[float, int, Addr, Addr, bytes]] = []
        self._order = itertools.count()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.sent = 0
        self.dropped_full = 0
        self.dropped_unbound = 0

    async def __aenter__(self) -> Self:
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        self._nursery.start_soon(self._deliver_delayed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return await self._cm.__aexit__(exc_type, exc, tb)

    def endpoint(self, host: str = "127.0.0.1", port: int = 0) -> MemoryEndpoint:
        """Bind an endpoint; port 0 picks a free one."""
        if port == 0:
            port = next(p for p in self._ports if (host, p) not in self._endpoints)
        addr = (host, port)
        if addr in self._endpoints:
            raise OSError(f"address {host}:{port} already in use")
        ep = MemoryEndpoint(self, addr, self._queue_size)
        self._endpoints[addr] = ep
        return ep

    def _unbind(self, addr: Addr) -> None:
        self._endpoints.pop(addr, None)

    def _send(self, data: bytes, src: Addr, dst: Addr) -> None:
        self.sent += 1
        now = trio.current_time()
        deliveries = [(0.0, data)] if self._route is None else self._route(data, src, dst, now)
        for delay, payload in deliveries:
            if delay <= 0:
                self._arrive(payload, src, dst)
            else:
                heapq.heappush(self._pending, (now + delay, next(self._order), src, dst, payload))
                self._wakeup.set()

    def _arrive(self, data: bytes, src: Addr, dst: Addr) -> None:
        ep = self._endpoints.get(dst)
        if ep is None:
            self.dropped_unbound += 1
            return
        try:
            ep._inbox_send.send_nowait((data, src))
        except trio.WouldBlock:
            self.dropped_full += 1

    async def _deliver_delayed(self) -> None:
        while True:
            deadline = self._pending[0][0] if self._pending else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            while self._pending and self._pending[0][0] <= now:
                _, _, src, dst, payload = heapq.heappop(self._pending)
                self._arrive(payload, src, dst)


class MemoryEndpoint:
    """An endpoint bound on a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, addr: Addr, queue_size: int) -> None:
        self._network = network
        self._addr = addr
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[bytes, Addr]](queue_size)

    @property
    def local_address(self) -> Addr:
        return self._addr

    async def sendto(self, data: bytes, addr: Addr) -> None:
        self._network._send(bytes(data), self._addr, addr)
        await trio.lowlevel.checkpoint()

    async def recvfrom(self) -> tuple[bytes, Addr]:
        return await self._inbox.receive()

    async def aclose(self) -> None:
        self._network._unbind(self._addr)
        await trio.lowlevel.checkpoint()
