"""Test doubles for the proxy: a programmable origin, memory listener and connector, an HTTP client.

The origin is a small h11 server whose routes return :class:`Reply` objects (or misbehave on
purpose); it records every request it sees.  The same origin serves memory streams (driver tests,
virtual time) and real TCP sockets (real-socket and interop tests).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import trio
import trio.lowlevel
import trio.testing

from netlab.aio.wallclock import WallClock
from netlab.config import ProxyConfig
from netlab.store.http_store import HttpStore
from servers.proxy.handler import Proxy
from servers.proxy.pool import UpstreamError
from servers.proxy.server import serve
from tests.proto.http_helpers import T0

ORIGIN_ADDRESS = "192.0.2.10"  # what the memory connector reports as the origin's address


@dataclass
class Reply:
    """What the origin answers: a status, headers, a body (bytes or chunks), and faults."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    chunked: bool = False  # no Content-Length: h11 sends chunked to HTTP/1.1 clients
    reset_after: int | None = None  # cut the connection after this many body bytes
    delay: float = 0.0  # seconds before the response head
    informational: int | None = None  # e.g. 100: sent before the final response
    close_after: bool = False  # close the connection after the response, without saying so


@dataclass
class Seen:
    """A request as the origin received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection it came on (counted per origin)


Handler = Callable[[Seen], Reply]


class Origin:
    """A programmable HTTP/1.1 origin server."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[Seen] = []
        self.connections = 0
        self.stall = False  # never answer (for upstream timeouts)

    def route(self, path: str, reply: Reply | Handler) -> None:
        if isinstance(reply, Reply):
            fixed = reply
            self.routes[path] = lambda _seen: fixed
        else:
            self.routes[path] = reply

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.target == path]

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_message(conn, stream, send_100=True)
                if request is None:
                    return
                assert isinstance(request, h11.Request)
                seen = Seen(
                    request.method.decode(),
                    request.target.decode(),
                    {n.decode().lower(): v.decode() for n, v in request.headers},
                    body,
                    number,
                )
                self.seen.append(seen)
                if self.stall:
                    await trio.sleep_forever()
                handler = self.routes.get(seen.target)
                reply = (
                    handler(seen) if handler else Reply(404, [("Content-Type", "text/plain")], b"no route")
                )
                if not await self._respond(conn, stream, reply) or reply.close_after:
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _respond(self, conn: h11.Connection, stream: trio.abc.Stream, reply: Reply) -> bool:
        if reply.delay:
            await trio.sleep(reply.delay)
        if reply.informational is not None:
            await stream.send_all(
                conn.send(h11.InformationalResponse(status_code=reply.informational, headers=[])) or b""
            )
        chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body
        headers = list(reply.headers)
        if not reply.chunked and isinstance(reply.body, bytes):
            headers.append(("Content-Length", str(len(reply.body))))
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)) or b"")
        sent = 0
        for chunk in chunks:
            if reply.reset_after is not None and sent + len(chunk) > reply.reset_after:
                await stream.send_all(conn.send(h11.Data(data=chunk[: reply.reset_after - sent])) or b"")
                await _reset(stream)
                return False
            if chunk:
                await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
            sent += len(chunk)
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return True


async def _reset(stream: trio.abc.Stream) -> None:
    """Abort the connection: a TCP reset on a socket (SO_LINGER 0), a plain close otherwise."""
    if isinstance(stream, trio.SocketStream):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)


async def _read_message(
    conn: h11.Connection, stream: trio.abc.Stream, *, send_100: bool = False
) -> tuple[h11.Request | h11.Response | None, bytes]:
    """One whole message from ``conn`` (its head and body); (None, b"") at EOF."""
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if send_100 and conn.they_are_waiting_for_100_continue:
                await stream.send_all(
                    conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                )
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""
        # InformationalResponse: skipped


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are made with :meth:`connect` (trio's test idea)."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](100)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()


class MemoryConnector:
    """Connects the proxy to in-process origins by host name, over memory streams."""

    def __init__(self, origins: dict[str, Origin], nursery: trio.Nursery) -> None:
        self.origins = origins
        self.nursery = nursery

    async def connect(self, host: str, port: int) -> tuple[trio.abc.Stream, str]:
        origin = self.origins.get(host)
        if origin is None:
            raise UpstreamError(502, f"cannot resolve {host}: no such origin in this test")
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(origin.handle, server)
        return client, ORIGIN_ADDRESS


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool = True


class HttpClient:
    """Speaks HTTP/1.1 to the proxy over one connection.

    ``after`` runs after each response: the harness uses it to wait until the proxy has finished
    the request (stored the body, written the log line) before the test goes on.
    """

    def __init__(self, stream: trio.abc.Stream, after: Callable[[], Awaitable[None]] | None = None) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self._after = after

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Response:
        headers = list(headers or [])
        if not any(n.lower() == "host" for n, _ in headers):
            headers.append(("Host", "ignored.test"))
        if body is not None and not any(
            n.lower() in ("content-length", "transfer-encoding") for n, _ in headers
        ):
            headers.append(("Content-Length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        response = await self.response()
        if self._after is not None:
            await self._after()
        return response

    async def response(self) -> Response:
        body = bytearray()
        head: h11.Response | None = None
        try:
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    self.h11.receive_data(bytes(await self.stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("closed")
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            if head is None:
                raise
            return Response(head.status_code, _decode(head.headers), bytes(body), complete=False)
        assert head is not None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return Response(head.status_code, _decode(head.headers), bytes(body))

    async def get(self, url: str, *headers: tuple[str, str]) -> Response:
        return await self.request("GET", url, list(headers))


def _decode(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, v in headers:
        name = n.decode().lower()
        out[name] = f"{out[name]}, {v.decode()}" if name in out else v.decode()
    return out


class LogCapture(logging.Handler):
    """Collects access-log lines (the Squid format) as they are emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(record.getMessage().split("\n"))

    def tags(self) -> list[str]:
        """The result codes, e.g. ["TCP_MISS/200", "TCP_MEM_HIT/200"]."""
        return [line.split()[3] for line in self.lines]


@dataclass
class Harness:
    proxy: Proxy
    store: HttpStore
    listener: MemoryListener
    origins: dict[str, Origin]
    log: LogCapture
    clock: WallClock
    stopping: trio.Event

    requests: int = 0

    async def client(self) -> HttpClient:
        return HttpClient(await self.listener.connect(), after=self.finished)

    async def get(self, url: str, *headers: tuple[str, str]) -> Response:
        """One GET on a new connection."""
        return await (await self.client()).get(url, *headers)

    async def finished(self) -> None:
        """Wait until the proxy has finished the last request (its access-log line is out)."""
        self.requests += 1
        await self.until(lambda: len(self.log.lines) >= self.requests)

    async def settle(self) -> None:
        """Wait until background work (stale-while-revalidate fetches) is done."""
        await self.until(lambda: not self.proxy.revalidating)

    @staticmethod
    async def until(condition: Callable[[], bool]) -> None:
        """Wait for ``condition``, yielding without letting virtual time pass."""
        for _ in range(1_000_000):
            if condition():
                return
            await trio.lowlevel.checkpoint()
        raise AssertionError("condition not reached")


@asynccontextmanager
async def running_proxy(
    tmp_path: Path,
    origins: dict[str, Origin],
    *,
    config: ProxyConfig | None = None,
    peer: str = "127.0.0.1",
    epoch: float = T0,
    store_class: type[HttpStore] = HttpStore,
) -> AsyncIterator[Harness]:
    """An in-memory proxy in front of ``origins`` (by host name); wall time starts at ``epoch``.

    ``store_class`` lets a test put a store with hooks (to hold a step back) under the proxy.
    """
    config = config or ProxyConfig()
    capture = LogCapture()
    access = logging.getLogger("netlab.access.proxy")
    access.addHandler(capture)
    access.setLevel(logging.INFO)
    try:
        async with trio.open_nursery() as nursery:
            clock = WallClock(epoch=epoch)
            store = await store_class.open(
                tmp_path / "cache",
                clock=clock.now,
                max_bytes=config.cache_mb * 1024 * 1024,
                memory_bytes=config.memory_cache_mb * 1024 * 1024,
                memory_object_bytes=config.memory_object_kb * 1024,
                max_object_bytes=config.max_object_mb * 1024 * 1024,
                threads=False,  # deterministic in virtual time: see Harness.until
            )
            listener = MemoryListener()
            stopping = trio.Event()
            proxy = await nursery.start(
                partial(
                    serve,
                    config,
                    store,
                    [listener],
                    stopping=stopping,
                    clock=clock.now,
                    connector=MemoryConnector(origins, nursery),
                    own_authorities=["proxy.test:8080"],
                    peer_of=lambda _stream: peer,
                )
            )
            yield Harness(proxy, store, listener, origins, capture, clock, stopping)
            nursery.cancel_scope.cancel()
        await store.aclose()
    finally:
        access.removeHandler(capture)
