"""CONNECT: a TCP tunnel through the proxy, for HTTPS (RFC 9110 section 9.3.6).

Strategy: check the port against the allowed list (443 unless configured otherwise: a tunnel to
any port would make the proxy a relay for SMTP spam and worse), connect, answer 200, then copy
bytes both ways until both directions have ended.  When one side finishes sending (EOF), the
other side's write half is shut down (a TCP half-close), so a client or server that reads to EOF
after sending still gets its answer; a reset on either side ends both directions at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from netlab.proto.http_forwarding import ConnectTarget
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.pool import UpstreamError

if TYPE_CHECKING:
    from servers.proxy.handler import Proxy

__all__ = ["run"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024  # bytes per read in the tunnel


async def run(proxy: Proxy, client: ClientConnection, target: ConnectTarget, tx: Transaction) -> None:
    tx.url = target.authority
    tx.tag = "TCP_TUNNEL"
    if target.port not in proxy.config.connect_ports:
        tx.tag, tx.status = "TCP_DENIED", 403
        ports = ", ".join(str(p) for p in proxy.config.connect_ports)
        await client.send_error(403, f"CONNECT is allowed to port(s) {ports} only, not {target.port}.")
        return
    try:
        upstream, address = await proxy.connector.connect(target.host, target.port)
    except UpstreamError as exc:
        tx.status = exc.status
        await client.send_error(exc.status, exc.message, target.authority)
        return
    tx.direct(address)
    tx.status = 200
    async with upstream:
        await client.send_response(200, [], reason=b"Connection established")
        client.mark_broken()  # the connection is a tunnel now, never again HTTP
        early, _closed = client.protocol.trailing_data  # bytes the client sent right after its request
        if early:
            await upstream.send_all(early)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_copy, client.stream, upstream, nursery.cancel_scope, None)
            nursery.start_soon(_copy, upstream, client.stream, nursery.cancel_scope, client)


async def _copy(
    source: trio.abc.Stream,
    sink: trio.abc.Stream,
    both: trio.CancelScope,
    counted: ClientConnection | None,
) -> None:
    """Copy until EOF, then half-close the sink; a failure on either stream ends the tunnel."""
    try:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
            if counted is not None:
                counted.bytes_sent += len(data)
        if isinstance(sink, trio.abc.HalfCloseableStream):
            await sink.send_eof()
        else:
            await sink.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("tunnel closed: %s", exc)
        both.cancel()
