"""What the proxy answers itself: its status page, ``OPTIONS *``, and the last hop of TRACE/OPTIONS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11

from netlab.proto.http_forwarding import LocalTarget
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.status import render_status

if TYPE_CHECKING:
    from servers.proxy.handler import Proxy

__all__ = ["ALLOWED_METHODS", "answer", "answer_last_hop"]

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT"
# Fields a TRACE echo leaves out: "likely to contain sensitive data" (RFC 9110 section 9.3.8).
_TRACE_HIDDEN = frozenset({b"authorization", b"cookie", b"proxy-authorization", b"set-cookie"})


async def answer(
    proxy: Proxy, client: ClientConnection, request: h11.Request, target: LocalTarget, tx: Transaction
) -> None:
    """The status page (GET or HEAD), or the proxy's own options (``OPTIONS *``)."""
    if target.path == b"*":
        tx.status = 200
        await client.send_response(200, [(b"Allow", ALLOWED_METHODS), (b"Content-Length", b"0")], b"")
        return
    if request.method not in (b"GET", b"HEAD"):
        tx.status = 405
        await client.send_response(405, [(b"Allow", b"GET, HEAD"), (b"Content-Length", b"0")], b"")
        return
    reports = proxy.reports
    stats = proxy.stats if reports is None else await reports.total()
    page = render_status(
        stats,
        proxy.store,
        now=proxy.clock(),
        idle_upstream=proxy.pool.idle_count,
        workers=1 if reports is None else reports.count,
    )
    tx.status, tx.content_type = 200, "text/html"
    headers = [
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Content-Length", str(len(page)).encode()),
        (b"Cache-Control", b"no-store"),
    ]
    await client.send_response(200, headers, page)


async def answer_last_hop(client: ClientConnection, request: h11.Request, tx: Transaction) -> None:
    """TRACE or OPTIONS with ``Max-Forwards: 0``: this hop answers (RFC 9110 section 7.6.2)."""
    tx.status = 200
    if request.method == b"OPTIONS":
        await client.send_response(200, [(b"Allow", ALLOWED_METHODS), (b"Content-Length", b"0")], b"")
        return
    # TRACE (RFC 9110 section 9.3.8): the request as received, as a message/http body.
    lines = [b"%s %s HTTP/%s" % (request.method, request.target, request.http_version)]
    lines += [b"%s: %s" % (n, v) for n, v in request.headers.raw_items() if n.lower() not in _TRACE_HIDDEN]
    echo = b"\r\n".join(lines) + b"\r\n\r\n"
    tx.content_type = "message/http"
    headers = [(b"Content-Type", b"message/http"), (b"Content-Length", str(len(echo)).encode())]
    await client.send_response(200, headers, echo)
