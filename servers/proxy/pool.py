"""Connections to origin servers: name resolution, connecting, and a pool of persistent ones.

Strategy: an :class:`UpstreamConnection` is one TCP connection with its own h11 client state.
After a complete exchange that both sides are willing to continue (HTTP/1.1 persistence, RFC 9112
section 9.3) it goes back to the :class:`ConnectionPool`, keyed by ``host:port``, where it waits
at most ``idle_timeout`` seconds.  An origin may close an idle connection at any moment (section
9.3.1 warns of this race); a reused connection that fails before any response byte arrived is
reported as :class:`StaleConnection` so the caller can retry an idempotent request on a fresh one.

The :class:`Connector` resolves names itself (through the system resolver, or the suite's stub
resolver when one is configured) so that "cannot resolve" and "cannot connect" can be told apart
in the 502 page, and so that the access log can name the address used.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

import h11
import trio

from netlab.aio.dns_stub import DnsLookupError, StubResolver

__all__ = [
    "ConnectionPool",
    "Connector",
    "Connects",
    "StaleConnection",
    "UpstreamConnection",
    "UpstreamError",
]

log = logging.getLogger(__name__)

MAX_RECV = 64 * 1024  # bytes per receive from an origin (below 128 KiB: see servers.proxy.client)


class UpstreamError(Exception):
    """The origin could not be used; ``status`` is the proxy's answer (502 or 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StaleConnection(Exception):
    """A reused connection turned out to be closed before the response began (safe to retry)."""


class Connects(Protocol):
    """What the pool and the tunnel need to reach an origin (tests plug in memory streams)."""

    async def connect(self, host: str, port: int) -> tuple[trio.abc.Stream, str]: ...


class Connector:
    """Opens TCP connections to origins by name.

    Args:
        resolver: the stub resolver to use, or None for the system resolver.
        connect_timeout: seconds for resolving plus connecting.
    """

    def __init__(self, resolver: StubResolver | None, connect_timeout: float) -> None:
        self.resolver = resolver
        self.connect_timeout = connect_timeout

    async def connect(self, host: str, port: int) -> tuple[trio.abc.Stream, str]:
        """A connected stream and the address it went to.

        Raises:
            UpstreamError: 502 if the name does not resolve or no address accepts, 504 on timeout.
        """
        with trio.move_on_after(self.connect_timeout):
            addresses = await self._resolve(host, port)
            errors = []
            for address in addresses:
                try:
                    stream = await trio.open_tcp_stream(address, port)
                except OSError as exc:
                    errors.append(f"{address}: {exc.strerror or exc}")
                    continue
                return stream, address  # trio sets TCP_NODELAY on its streams
            raise UpstreamError(502, f"cannot connect to {host} port {port} ({'; '.join(errors)})")
        raise UpstreamError(504, f"no connection to {host} port {port} within {self.connect_timeout:g} s")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        try:
            if self.resolver is not None:
                addresses = await self.resolver.resolve_addresses(host)
            else:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except (OSError, DnsLookupError) as exc:
            raise UpstreamError(502, f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise UpstreamError(502, f"cannot resolve {host}: no address")
        return addresses


class UpstreamConnection:
    """One connection to an origin and its h11 client state machine."""

    def __init__(self, stream: trio.abc.Stream, key: str, address: str, max_header_bytes: int) -> None:
        self.stream = stream
        self.key = key
        self.address = address
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self.reused = False
        self.received_anything = False
        self.idle_since = 0.0

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def send_data(self, data: bytes) -> None:
        parts = self.h11.send_with_data_passthrough(h11.Data(data=data))
        if parts:
            await self.stream.send_all(b"".join(parts))

    async def next_event(self) -> h11.Event:
        """The next event from the origin, receiving as needed.

        Raises:
            StaleConnection: a reused connection closed before sending anything.
            h11.RemoteProtocolError: the origin broke HTTP, or closed mid-message.
            trio.BrokenResourceError: the connection failed.
        """
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await self.stream.receive_some(MAX_RECV)
            except trio.BrokenResourceError:
                if self.reused and not self.received_anything:
                    raise StaleConnection(self.key) from None
                raise
            if not data and self.reused and not self.received_anything:
                raise StaleConnection(self.key)
            self.received_anything = True
            self.h11.receive_data(bytes(data))

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class ConnectionPool:
    """Idle persistent connections by ``host:port``, each used by one exchange at a time."""

    def __init__(
        self,
        connector: Connects,
        *,
        idle_timeout: float,
        per_host: int,
        max_header_bytes: int,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.connector = connector
        self.idle_timeout = idle_timeout
        self.per_host = per_host
        self.max_header_bytes = max_header_bytes
        self._clock = clock
        self._idle: dict[str, deque[UpstreamConnection]] = {}
        self.connects = 0
        self.reuses = 0

    async def acquire(self, host: str, port: int) -> UpstreamConnection:
        """An idle connection to ``host:port`` if there is a live one, else a new one.

        Raises:
            UpstreamError: connecting failed (see :meth:`Connector.connect`).
        """
        key = f"{host}:{port}"
        idle = self._idle.get(key)
        now = self._clock()
        while idle:
            conn = idle.pop()  # the most recently used is the least likely to have been closed
            if now - conn.idle_since < self.idle_timeout and not _peer_closed(conn.stream):
                conn.reused = True
                conn.received_anything = False
                self.reuses += 1
                return conn
            await conn.aclose()
        stream, address = await self.connector.connect(host, port)
        self.connects += 1
        return UpstreamConnection(stream, key, address, self.max_header_bytes)

    async def release(self, conn: UpstreamConnection) -> None:
        """Take a connection back after an exchange; it is kept only if it can carry another."""
        if not conn.reusable:
            await conn.aclose()
            return
        conn.h11.start_next_cycle()
        conn.idle_since = self._clock()
        idle = self._idle.setdefault(conn.key, deque())
        idle.append(conn)
        while len(idle) > self.per_host:
            await idle.popleft().aclose()

    async def reap(self) -> None:
        """Close connections idle for longer than ``idle_timeout``."""
        now = self._clock()
        for key, idle in list(self._idle.items()):
            while idle and now - idle[0].idle_since >= self.idle_timeout:
                await idle.popleft().aclose()
            if not idle:
                del self._idle[key]

    async def run_reaper(self) -> None:
        while True:
            await trio.sleep(self.idle_timeout / 2)
            await self.reap()

    @property
    def idle_count(self) -> int:
        return sum(len(q) for q in self._idle.values())

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.aclose()
        self._idle.clear()


def _peer_closed(stream: trio.abc.Stream) -> bool:
    """Whether an idle connection has something to read: its FIN (or bytes nobody asked for).

    Either way it cannot carry a new exchange.  Checked with a zero-timeout poll(), a cheap
    system call, so that most closed connections are noticed before a request is sent on them.
    """
    if not isinstance(stream, trio.SocketStream):
        return False
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLIN)
    return bool(poller.poll(0))
