"""The lab's web origin: the lab shop (:mod:`netlab.lab.site`) over HTTP/1.1.

Strategy: h11 frames the messages and :func:`netlab.lab.site.respond` chooses every answer; this
module only moves bytes.  One task per connection under ``trio.serve_listeners``; a connection
carries requests one after another for as long as h11 says it may (RFC 9112 section 9.3).  The
wait for a request, head and body, is bounded by :data:`IDLE_TIMEOUT`, after which the
connection is closed without a word (section 9.8).  A request body (a GET or HEAD should have
none) is read and dropped up to :data:`MAX_BODY` bytes; a longer one gets 413 and the connection
closes.  A malformed request gets 400 (431 for a head over :data:`MAX_HEADER_BYTES`) and the
connection closes.  One access-log line per request in the Common Log Format, as web servers
write it, to ``netlab.access.lab-web``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import h11
import trio

from netlab.aio.wallclock import WallClock
from netlab.lab.site import Reply, Site, plain_reply, respond
from netlab.log import access_logger

__all__ = ["IDLE_TIMEOUT", "WebOrigin", "serve_origin"]

log = logging.getLogger(__name__)
access = access_logger("lab-web")

IDLE_TIMEOUT = 30.0  # seconds for the next request to arrive, head and body
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY = 64 * 1024
MAX_RECV = 65536


class _BodyTooLarge(Exception):
    pass


class WebOrigin:
    """Serves the site on any stream (tests pass memory streams).

    Args:
        clock: wall-clock seconds, for the Date field and the access log.
    """

    def __init__(self, site: Site, clock: Callable[[], float]) -> None:
        self.site = site
        self.clock = clock
        self.requests = 0
        self.bad_requests = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection until the client closes it, idles, or breaks HTTP."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = _peer(stream)
        try:
            while True:
                request: h11.Request | None = None
                with trio.move_on_after(IDLE_TIMEOUT):
                    request = await _read_request(conn, stream)
                if request is None:
                    return  # closed by the client, or idle too long: closed quietly (section 9.8)
                self.requests += 1
                reply = respond(self.site, request.method, request.target, request.headers, self.clock())
                with trio.move_on_after(IDLE_TIMEOUT) as sending:
                    await _send(conn, stream, reply)
                if sending.cancelled_caught:
                    return  # a client that does not read its answer
                self._log(peer, request, reply)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(conn, stream, exc.error_status_hint, f"bad request: {exc}")
        except _BodyTooLarge:
            await self._refuse(conn, stream, 413, f"a request body over {MAX_BODY} bytes")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            await trio.aclose_forcefully(stream)

    async def _refuse(self, conn: h11.Connection, stream: trio.abc.Stream, status: int, why: str) -> None:
        self.bad_requests += 1
        log.info("lab web origin: %s", why)
        # h11 lets a server answer even a request it could not parse, then the connection ends.
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            reply = plain_reply(status, why, self.clock())
            reply.headers.append((b"Connection", b"close"))
            with (
                trio.move_on_after(IDLE_TIMEOUT),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await _send(conn, stream, reply)

    def _log(self, peer: str, request: h11.Request, reply: Reply) -> None:
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(self.clock()))
        target = request.target.decode("latin-1")
        line = f"{request.method.decode()} {target} HTTP/{request.http_version.decode()}"
        size = len(reply.body) if reply.body else "-"
        access.info('%s - - [%s] "%s" %d %s', peer, stamp, line, reply.status, size)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    """The next request, its body read and dropped; None when the client closed first."""
    request: h11.Request | None = None
    body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(MAX_RECV)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_BODY:
                raise _BodyTooLarge
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            if request is not None:
                raise h11.RemoteProtocolError("the connection closed inside a request")
            return None


async def _send(conn: h11.Connection, stream: trio.abc.Stream, reply: Reply) -> None:
    data = conn.send(h11.Response(status_code=reply.status, headers=reply.headers)) or b""
    if reply.body:
        data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


def _peer(stream: trio.abc.Stream) -> str:
    if isinstance(stream, trio.SocketStream):
        return str(stream.socket.getpeername()[0])
    return "-"


async def serve_origin(
    site: Site,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    clock: Callable[[], float] | None = None,
    task_status: trio.TaskStatus[WebOrigin] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``site`` on ``listeners`` until cancelled."""
    origin = WebOrigin(site, clock or WallClock().now)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, origin.handle, list(listeners))
        task_status.started(origin)
