"""One client connection: the h11 server side of the proxy.

Strategy: :class:`ClientConnection` owns the stream and its ``h11.Connection(h11.SERVER)`` and
offers the handler a few verbs: wait for the next request, read its body, send a response whole
or in pieces, and finish the request so the connection can carry another (persistence, RFC 9112
section 9.3).

Requests are parsed by h11 (or found in a :class:`~servers.proxy.wire.RequestMemo` of heads h11
has parsed).  Responses go through h11's writer too, except one kind: a response from the cache,
whose head was serialised once for many hits (:func:`~servers.proxy.wire.prepare_head`) and whose
body is framed by Content-Length.  Those bytes are sent as they are (:meth:`send_prepared
<ClientConnection.send_prepared>`), and h11 is given a fresh parser for the next request instead
of being walked through the response.  A request found in the memo reaches h11 only if something
else than a prepared response answers it (the :attr:`ClientConnection.protocol` property sees to it).
While the server shuts down every response says ``Connection: close`` (RFC 9112 section 9.6).

Time limits live here: a connection idle between requests is closed after ``idle_timeout``
through its :class:`~netlab.aio.sessions.Waiter`, the server's one timer for every connection's
wait (silently, as RFC 9112 section 9.8 allows), and once a
request has started its head must arrive within ``request_timeout`` (else 408).  While idle the
wait is also cut short when the server shuts down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import h11
import trio

from netlab.aio.sessions import Waiter
from servers.proxy.pages import error_page, reason_phrase
from servers.proxy.wire import RequestMemo

__all__ = ["ClientConnection", "ClientGone"]

log = logging.getLogger(__name__)

# Bytes per receive from a client.  A receive allocates its whole buffer first: at 128 KiB and
# above, the C library maps fresh memory for it and unmaps it again, every time, which costs ten
# times the receive itself.
MAX_RECV = 64 * 1024
_JOIN_LIMIT = 64 * 1024  # bodies up to this size go out in the same write as the head
_END = h11.EndOfMessage()  # events are immutable: one will do for every response
_CLOSE = (b"Connection", b"close")


class ClientGone(Exception):
    """The client closed or reset its connection, or broke HTTP, in the middle of a request."""


class ClientConnection:
    """The client side of the proxy for one connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        peer: str,
        waiter: Waiter,
        *,
        max_header_bytes: int,
        request_timeout: float,
        memo: RequestMemo | None = None,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._max_header_bytes = max_header_bytes
        self._memo = memo
        self._fresh = True  # h11 has not been given any bytes since it was made
        self._unparsed: bytes | None = None  # the current request's head, found in the memo
        self._leftover = b""  # what arrived after that head
        self._waiter = waiter  # an idle wait that times out, or a shutdown, ends the session
        self._request_timeout = request_timeout
        self._partial = False  # bytes of a request that is not complete yet have arrived
        self.bytes_sent = 0  # for the current request, head and body (the access log's size)
        self.broken = False  # the current response could not be completed: close after it
        self._body_refused = False  # a final response went out while the client awaited 100
        self._method = b""  # of the current request
        self._bodiless = False  # the current response has no content (HEAD, 204, 304)
        self._keep_alive = True  # the current request lets the connection persist
        self._request_body = False  # the current request has content
        self._prepared = False  # the current response went out by send_prepared, not through h11

    async def next_request(self) -> h11.Request | None:
        """The next request, or None if the client closed, idled out, or the server is closing.

        Raises:
            h11.RemoteProtocolError: a malformed request (its ``error_status_hint`` is the
                answer: 400, or 431 for a head larger than ``max_header_bytes``).
            trio.TooSlowError: a request head that did not arrive in time (answer 408).
        """
        self.bytes_sent = 0
        conn = self.protocol
        first: bytes | None = None  # the first bytes given to a fresh parser
        while True:
            # (A fresh parser has nothing to tell before it has been given something.)
            event = h11.NEED_DATA if self._fresh else conn.next_event()
            if isinstance(event, h11.Request):
                self._partial = False
                if first is not None and self._memo is not None:
                    self._memo.learn(first[: len(first) - len(conn.trailing_data[0])], event)
                return self._begin(event)
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed (or a Paused connection after a CONNECT)
            if self._partial:
                with trio.fail_after(self._request_timeout):
                    data = await self._receive()
            else:
                if self._waiter.closing:
                    return None
                try:
                    data = bytes(await self._waiter.receive(self.stream, MAX_RECV))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = None
            if data is None:
                return None
            if self._fresh:
                self._fresh = False
                found = self._memo.lookup(data) if self._memo is not None and data else None
                if found is not None:
                    request, end = found
                    self._unparsed, self._leftover = data[:end], data[end:]
                    return self._begin(request)
                first = data
            else:
                first = None
            self._partial = bool(data)
            conn.receive_data(data)

    @property
    def protocol(self) -> h11.Connection:
        """The h11 connection, brought up to date with the current request if it came from the memo."""
        if self._unparsed is not None:
            self._conn.receive_data(self._unparsed + self._leftover)
            self._unparsed, self._leftover = None, b""
            event = self._conn.next_event()
            assert isinstance(event, h11.Request)  # the same bytes it parsed before
        return self._conn

    def _begin(self, request: h11.Request) -> h11.Request:
        self._method = request.method
        self._note_framing(request)
        return request

    def _note_framing(self, request: h11.Request) -> None:
        """What h11 would know of the request's persistence and body, for prepared responses."""
        # RFC 9112 section 9.3: HTTP/1.1 persists unless "close" is named; h11 closes after
        # every HTTP/1.0 exchange.  Section 6.3: content is framed by either of two fields.
        self._keep_alive = request.http_version == b"1.1"
        self._request_body = False
        for name, value in request.headers:  # names come lower-cased from h11
            if name == b"connection":
                if b"close" in (token.strip() for token in value.lower().split(b",")):
                    self._keep_alive = False
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                self._request_body = True

    @property
    def request_has_body(self) -> bool:
        """Whether the current request has content (RFC 9112 section 6.3)."""
        return self._request_body

    async def _receive(self) -> bytes | None:
        try:
            return bytes(await self.stream.receive_some(MAX_RECV))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None

    async def body(self) -> AsyncIterator[bytes]:
        """The current request's body as it arrives.

        Raises:
            ClientGone: the client went away or broke the framing before the end.
        """
        conn = self.protocol
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            elif event is h11.NEED_DATA:
                try:
                    with trio.fail_after(self._request_timeout):
                        data = bytes(await self.stream.receive_some(MAX_RECV))
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
                    raise ClientGone(str(exc)) from exc
                try:
                    conn.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise ClientGone(str(exc)) from exc
            else:
                raise ClientGone(f"request body ended by {type(event).__name__}")

    # -- sending -------------------------------------------------------------------------------

    async def send_response(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None = None,
        *,
        reason: bytes = b"",
    ) -> None:
        """Send a response head, and with ``body`` given the whole body and its end too.

        Raises:
            ClientGone: the client is no longer there.
        """
        head = h11.Response(status_code=status, headers=headers, reason=reason or reason_phrase(status))
        await self.send_head(head, body)

    async def send_head(self, head: h11.Response, body: bytes | None = None) -> None:
        """Like :meth:`send_response`, for a response head built (and validated) beforehand."""
        conn = self.protocol
        if conn.they_are_waiting_for_100_continue:
            # RFC 9110 section 10.1.1: the client may now close instead of sending the body, so
            # waiting for that body to reuse the connection could hang; close after this response.
            self._body_refused = True
        self._bodiless = self._method == b"HEAD" or head.status_code in (204, 304)
        if self._waiter.closing:
            head = h11.Response(
                status_code=head.status_code, headers=[*head.headers.raw_items(), _CLOSE], reason=head.reason
            )
        data = conn.send(head)
        assert data is not None
        if body is None:
            await self._send(data)
            return
        if body and not self._bodiless:
            parts = conn.send_with_data_passthrough(h11.Data(data=body)) or []
        else:
            parts = []  # a response to HEAD, or a 204/304, has no content
        end = conn.send(_END) or b""
        if len(body) <= _JOIN_LIMIT:
            await self._send(b"".join([data, *parts, end]))
        else:
            await self._send(data)
            for part in [*parts, end]:
                await self._send(part)

    async def send_prepared(self, head: bytes, body: bytes = b"") -> None:
        """Send a response head serialised by :func:`~servers.proxy.wire.prepare_head`, and
        ``body`` (whole or a first part: the rest follows with :meth:`send_prepared_data`).

        For a request without content only; h11's writer is not involved (see the module notes).

        Raises:
            ClientGone: the client is no longer there.
        """
        if self._prepared:
            raise h11.LocalProtocolError("a response was already started")
        # (A request from the memo expects no 100 and has had no answer: h11 need not be asked.)
        if self._unparsed is None:
            if self._conn.our_state is not h11.SEND_RESPONSE:
                raise h11.LocalProtocolError("a response was already started")
            if self._conn.they_are_waiting_for_100_continue:
                self._body_refused = True  # as in send_head
        self._prepared = True
        if not self._keep_alive or self._waiter.closing:
            # Tell the client, as h11 would (RFC 9112 section 9.6): insert before the blank line.
            head = head[:-2] + b"Connection: close\r\n\r\n"
            self._keep_alive = False
        self._bodiless = self._method == b"HEAD"
        if not body or self._bodiless:
            await self._send(head)
        elif len(body) <= _JOIN_LIMIT:
            await self._send(head + body)
        else:
            await self._send(head)
            await self._send(body)

    async def send_prepared_data(self, data: bytes) -> None:
        """More of the body after :meth:`send_prepared` (Content-Length framing: as it is)."""
        if data and not self._bodiless:
            await self._send(data)

    async def send_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        data = self.protocol.send(h11.InformationalResponse(status_code=status, headers=headers))
        if data:
            await self._send(data)

    async def send_data(self, data: bytes) -> None:
        if self._bodiless or not data:
            return  # the response to a HEAD request, or one without content
        for part in self.protocol.send_with_data_passthrough(h11.Data(data=data)) or []:
            await self._send(part)

    async def send_end(self) -> None:
        data = self.protocol.send(_END)
        if data:
            await self._send(data)

    async def send_error(self, status: int, message: str, url: str = "") -> bool:
        """Answer with the proxy's own error page if a response can still be started.

        Returns:
            Whether it was sent; if not, the connection is marked broken (to be closed).
        """
        if self._prepared or self.protocol.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.broken = True
            return False
        headers, body = error_page(status, message, url)
        try:
            await self.send_response(status, headers, body)
        except (ClientGone, h11.LocalProtocolError):
            self.broken = True
            return False
        return True

    async def _send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.broken = True
            self.protocol.send_failed()
            raise ClientGone(str(exc)) from exc
        self.bytes_sent += len(data)

    # -- between requests ----------------------------------------------------------------------

    async def finish_request(self) -> bool:
        """After a response: read what is left of the request, and prepare for the next.

        Returns:
            Whether the connection can carry another request.
        """
        if self._prepared:
            return self._next_parser()
        conn = self.protocol
        if self.broken or self._body_refused or conn.our_state is not h11.DONE:
            return False
        # The request's end (or an unread body, e.g. after an error page) must be consumed
        # before the next request; a large unread body is not worth reading.
        if conn.their_state is h11.SEND_BODY and not await self._drain(MAX_RECV):
            return False
        if conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True

    def _next_parser(self) -> bool:
        """After a prepared response: a fresh h11 parser, given what the client sent beyond the
        request (pipelined requests), if the connection can carry another request."""
        self._prepared = False
        if self.broken or self._body_refused or not self._keep_alive or self._request_body:
            return False
        if self._unparsed is not None:
            data, closed = self._leftover, False
            self._unparsed, self._leftover = None, b""
        else:
            data, closed = self._conn.trailing_data
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_header_bytes)
        self._fresh = not data and not closed
        if data:
            self._conn.receive_data(data)
        if closed:
            self._conn.receive_data(b"")
        return True

    async def _drain(self, limit: int) -> bool:
        """Consume the rest of the request (at most ``limit`` body bytes); whether it ended."""
        conn = self.protocol
        received = 0
        while True:
            event = conn.next_event()  # for a request without content: EndOfMessage at once
            if isinstance(event, h11.EndOfMessage):
                return True
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > limit:
                    return False
            elif event is h11.NEED_DATA:
                with trio.move_on_after(self._request_timeout):
                    data = await self._receive()
                    if data:
                        try:
                            conn.receive_data(data)
                        except h11.RemoteProtocolError:
                            return False
                        continue
                return False
            else:
                return False

    def mark_broken(self) -> None:
        self.broken = True
