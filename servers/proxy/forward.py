"""Forwarding one request to its origin and reading the response head (RFC 9110 section 7.6).

Strategy: :meth:`Forwarder.exchange` is an async context manager around one exchange on a pooled
connection.  It sends the request head, then either the end of the message (no body) or starts a
task that streams the client's body upstream while the response head is awaited, because an
origin may answer before the body is complete, and because a client that sent ``Expect:
100-continue`` sends nothing until the origin's 100 (Continue) has been relayed (RFC 9110 section
10.1.1).  Inside the ``async with`` the caller reads the response body chunk by chunk and relays
it; on leaving, the connection goes back to the pool only if the exchange ended cleanly.

A request without a body that meets a reused connection already closed by the origin is retried
once on a new connection if its method is idempotent (RFC 9110 section 9.2.2; RFC 9112 9.3.1).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import h11
import trio

from netlab.proto.http_fields import Fields, has_field
from netlab.proto.http_forwarding import Target, end_to_end_fields, via_value
from servers.proxy.pool import ConnectionPool, StaleConnection, UpstreamConnection, UpstreamError

__all__ = ["Exchange", "Forwarder", "UpstreamBroken", "request_fields", "response_fields"]

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

Informational = Callable[[h11.InformationalResponse], Awaitable[None]]


class UpstreamBroken(Exception):
    """The origin failed after the response head: the body is incomplete."""


def request_fields(
    fields: Fields, target: Target, received_by: str, http_version: bytes
) -> list[tuple[bytes, bytes]]:
    """The request fields to send upstream.

    Hop-by-hop fields go (RFC 9110 section 7.6.1); Host becomes the target's authority, since a
    proxy "MUST ignore the received Host header field" of an absolute-form request (RFC 9112
    section 3.2.2); our Via member is appended (RFC 9110 section 7.6.3).
    """
    chunked = has_field(fields, b"transfer-encoding")
    out = [(b"Host", target.authority.encode("ascii"))]
    out += [
        (n, v)
        for n, v in end_to_end_fields(fields)
        if n.lower() != b"host" and not (chunked and n.lower() == b"content-length")
    ]
    if chunked:
        # Transfer-Encoding is hop-by-hop: this hop frames the body again, in chunks (a
        # Content-Length beside it is void, RFC 9112 section 6.3).
        out.append((b"Transfer-Encoding", b"chunked"))
    out.append((b"Via", via_value(http_version, received_by)))
    return out


def response_fields(fields: Fields, received_by: str, http_version: bytes) -> list[tuple[bytes, bytes]]:
    """The response fields to send on to the client (hop-by-hop removed, Via appended).

    Content-Length is kept as the framing of the body unless the origin used Transfer-Encoding,
    which overrides it (RFC 9112 section 6.3); h11 then picks the framing towards the client.
    """
    chunked = has_field(fields, b"transfer-encoding")
    out = [(n, v) for n, v in end_to_end_fields(fields) if not (chunked and n.lower() == b"content-length")]
    out.append((b"Via", via_value(http_version, received_by)))
    return out


@dataclass
class Exchange:
    """A request sent upstream and the head of its response."""

    conn: UpstreamConnection
    response: h11.Response
    request_time: float
    response_time: float
    upstream_timeout: float
    complete: bool = False
    body_done: trio.Event = field(default_factory=trio.Event)

    @property
    def status(self) -> int:
        return self.response.status_code

    async def body(self) -> AsyncIterator[bytes]:
        """The response body as it arrives.

        Raises:
            UpstreamBroken: the origin closed, reset or stalled before the end of the body.
        """
        conn = self.conn
        while True:
            try:
                with trio.fail_after(self.upstream_timeout):
                    event = await conn.next_event()
            except trio.TooSlowError as exc:
                raise UpstreamBroken(f"no data from {conn.key} for {self.upstream_timeout:g} s") from exc
            except (h11.RemoteProtocolError, trio.BrokenResourceError, StaleConnection) as exc:
                raise UpstreamBroken(f"{conn.key}: {exc}") from exc
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            else:  # ConnectionClosed before the end: h11 raises for most cases; be sure
                raise UpstreamBroken(f"{conn.key}: unexpected {type(event).__name__}")

    async def discard_body(self, limit: int = 1 << 20) -> None:
        """Read and drop the body (up to ``limit`` bytes) so the connection can be reused."""
        received = 0
        async for chunk in self.body():
            received += len(chunk)
            if received > limit:
                return


class Forwarder:
    """Sends requests to origins over pooled connections."""

    def __init__(self, pool: ConnectionPool, *, clock: Callable[[], float], upstream_timeout: float) -> None:
        self.pool = pool
        self.clock = clock
        self.upstream_timeout = upstream_timeout

    @asynccontextmanager
    async def exchange(
        self,
        target: Target,
        method: bytes,
        fields: list[tuple[bytes, bytes]],
        *,
        body: AsyncIterator[bytes] | None = None,
        on_informational: Informational | None = None,
    ) -> AsyncIterator[Exchange]:
        """Send a request and yield its response head; the body is read from the exchange.

        Raises:
            UpstreamError: 502 (cannot resolve, connect, or a broken response head) or 504
                (no response head within ``upstream_timeout``), before anything was relayed.
        """
        request = h11.Request(method=method, target=target.path, headers=fields)
        if body is None:
            conn, exchange = await self._exchange_without_body(target, request, on_informational)
            try:
                yield exchange
            except BaseException:
                await conn.aclose()
                raise
        else:
            conn = await self.pool.acquire(target.host, target.port)
            try:
                with _single_exceptions():
                    async with trio.open_nursery() as nursery:
                        request_time = self.clock()
                        pump_done = trio.Event()
                        await self._send_head(conn, request)
                        nursery.start_soon(self._pump, conn, body, pump_done)
                        response = await self._read_head(conn, on_informational)
                        exchange = Exchange(conn, response, request_time, self.clock(), self.upstream_timeout)
                        yield exchange
                        if not pump_done.is_set():
                            # The origin answered before taking the whole body: this connection's
                            # request is unfinished, so it cannot carry another exchange.
                            exchange.complete = False
                            nursery.cancel_scope.cancel()
            except BaseException:
                await conn.aclose()
                raise
        if exchange.complete and conn.reusable:
            await self.pool.release(conn)
        else:
            await conn.aclose()

    async def _exchange_without_body(
        self, target: Target, request: h11.Request, on_informational: Informational | None
    ) -> tuple[UpstreamConnection, Exchange]:
        """Send a bodiless request; retried once if a reused connection was found closed."""
        attempts = 2 if request.method in IDEMPOTENT else 1
        for attempt in range(attempts):
            conn = await self.pool.acquire(target.host, target.port)
            try:
                request_time = self.clock()
                await self._send_head(conn, request)
                await conn.send(h11.EndOfMessage())
                response = await self._read_head(conn, on_informational)
            except StaleConnection:
                await conn.aclose()
                if attempt + 1 < attempts:
                    log.debug("retrying %s on a new connection", target.uri)
                    continue
                raise UpstreamError(502, f"{target.authority} closed the connection") from None
            except BaseException:
                await conn.aclose()
                raise
            return conn, Exchange(conn, response, request_time, self.clock(), self.upstream_timeout)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_head(self, conn: UpstreamConnection, request: h11.Request) -> None:
        try:
            await conn.send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if conn.reused:
                raise StaleConnection(conn.key) from exc
            raise UpstreamError(502, f"{conn.key}: {exc}") from exc

    async def _read_head(
        self, conn: UpstreamConnection, on_informational: Informational | None
    ) -> h11.Response:
        try:
            with trio.fail_after(self.upstream_timeout):
                while True:
                    event = await conn.next_event()
                    if isinstance(event, h11.Response):
                        return event
                    if isinstance(event, h11.InformationalResponse):
                        if on_informational is not None:
                            await on_informational(event)
                        continue
                    raise UpstreamError(502, f"{conn.key} closed the connection without a response")
        except trio.TooSlowError as exc:
            raise UpstreamError(
                504, f"no response from {conn.key} within {self.upstream_timeout:g} s"
            ) from exc
        except h11.RemoteProtocolError as exc:
            raise UpstreamError(502, f"invalid response from {conn.key}: {exc}") from exc
        except trio.BrokenResourceError as exc:
            raise UpstreamError(502, f"{conn.key} reset the connection: {exc}") from exc

    async def _pump(self, conn: UpstreamConnection, body: AsyncIterator[bytes], done: trio.Event) -> None:
        """Stream the client's request body upstream."""
        try:
            async for chunk in body:
                await conn.send_data(chunk)
            await conn.send(h11.EndOfMessage())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The origin stopped reading: its response (if any) says why.  The connection
            # cannot be reused, which `done` staying unset tells the exchange.  (A client that
            # goes away raises ClientGone from `body` instead, which ends the whole exchange.)
            return
        done.set()


@contextmanager
def _single_exceptions() -> Iterator[None]:
    """Let the one exception a nursery wrapped in an ExceptionGroup through as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
