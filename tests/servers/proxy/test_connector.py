"""Reaching origins on real sockets: names through the stub resolver (``--resolver``) or the system's."""

from __future__ import annotations

from functools import partial

import dnslib
import h11
import pytest
import trio

from netlab.aio.dns_stub import StubResolver
from netlab.aio.endpoint import UdpEndpoint, open_udp_endpoint
from servers.proxy.pool import ConnectionPool, Connector, UpstreamError
from tests.interop.proxy_env import serve_origin
from tests.servers.proxy.harness import Origin, Reply


async def dns_server(ep: UdpEndpoint, zone: dict[str, str]) -> None:
    """Answers A questions from ``zone``; NXDOMAIN for other names, nothing for AAAA."""
    while True:
        data, peer = await ep.recvfrom()
        query = dnslib.DNSRecord.parse(data)
        reply = query.reply()
        name = str(query.q.qname).rstrip(".")
        if name not in zone:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        elif query.q.qtype == dnslib.QTYPE.A:
            reply.add_answer(*dnslib.RR.fromZone(f"{name}. 60 IN A {zone[name]}"))
        await ep.sendto(reply.pack(), peer)


async def listening_port(nursery: trio.Nursery) -> int:
    async def greet(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"hello")

    listeners = await nursery.start(partial(trio.serve_tcp, greet, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


@pytest.mark.timeout(20)
async def test_names_resolved_by_the_stub_resolver() -> None:
    async with trio.open_nursery() as nursery:
        ep = await open_udp_endpoint("127.0.0.1", 0)
        nursery.start_soon(dns_server, ep, {"origin.test": "127.0.0.1"})
        port = await listening_port(nursery)
        connector = Connector(StubResolver(ep.local_address, timeout=0.5, attempts=2), connect_timeout=5)
        stream, address = await connector.connect("origin.test", port)
        assert address == "127.0.0.1"
        assert await stream.receive_some(5) == b"hello"
        await stream.aclose()
        with pytest.raises(UpstreamError) as unknown:
            await connector.connect("missing.test", port)
        assert unknown.value.status == 502
        assert "cannot resolve missing.test" in unknown.value.message
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(20)
async def test_system_resolver_and_refused_connections() -> None:
    async with trio.open_nursery() as nursery:
        port = await listening_port(nursery)
        connector = Connector(None, connect_timeout=5)
        stream, address = await connector.connect(
            "localhost", port
        )  # ::1 may refuse first; 127.0.0.1 answers
        assert address == "127.0.0.1"
        await stream.aclose()
        with trio.socket.socket() as unused:
            await unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]  # bound, not listening: connections are refused
            with pytest.raises(UpstreamError) as refused:
                await connector.connect("127.0.0.1", closed_port)
        assert refused.value.status == 502
        assert "cannot connect" in refused.value.message
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(20)
async def test_pool_does_not_reuse_a_connection_the_origin_closed() -> None:
    origin = Origin()
    origin.route("/bye", Reply(200, [], b"bye", close_after=True))  # closes without saying so
    origin.route("/stay", Reply(200, [], b"stay"))
    async with trio.open_nursery() as nursery:
        port = await serve_origin(nursery, origin)
        pool = ConnectionPool(Connector(None, 5), idle_timeout=30, per_host=4, max_header_bytes=65536)
        for path, expect_connects in (("/stay", 1), ("/stay", 1), ("/bye", 1), ("/stay", 2)):
            conn = await pool.acquire("127.0.0.1", port)
            await conn.send(h11.Request(method="GET", target=path, headers=[("Host", "x")]))
            await conn.send(h11.EndOfMessage())
            while not isinstance(await conn.next_event(), h11.EndOfMessage):
                pass
            assert pool.connects == expect_connects
            await pool.release(conn)
            if path == "/bye":
                # The origin's FIN reaches the idle connection in the pool ...
                assert isinstance(conn.stream, trio.SocketStream)
                await trio.lowlevel.wait_readable(conn.stream.socket)
        # ... and the pool noticed it without sending a request on it.
        assert [s.connection for s in origin.seen] == [1, 1, 1, 2]
        await pool.aclose()
        nursery.cancel_scope.cancel()
