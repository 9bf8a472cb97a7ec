"""Reaching origins on real sockets: names through the stub resolver (``--resolver``) or the system's."""

from __future__ import annotations

from functools import partial

import dnslib
import pytest
import trio

from netlab.aio.dns_stub import StubResolver
from netlab.aio.endpoint import UdpEndpoint, open_udp_endpoint
from servers.proxy.pool import Connector, UpstreamError


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
