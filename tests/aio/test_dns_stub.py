"""The stub client against a scripted resolver on 127.0.0.1 (real UDP and TCP sockets)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import dnslib
import pytest
import trio

from netlab.aio.dns_stub import DnsLookupError, StubResolver
from netlab.aio.endpoint import UdpEndpoint, open_udp_endpoint

Responder = Callable[[dnslib.DNSRecord], list[bytes]]


def _reply(query: dnslib.DNSRecord, *rrs: str, rcode: int = 0, tc: bool = False) -> dnslib.DNSRecord:
    reply = query.reply()
    reply.header.rcode = rcode
    reply.header.tc = int(tc)
    for rr in rrs:
        reply.add_answer(*dnslib.RR.fromZone(rr))
    return reply


async def _serve_udp(ep: UdpEndpoint, respond: Responder) -> None:
    while True:
        data, peer = await ep.recvfrom()
        for out in respond(dnslib.DNSRecord.parse(data)):
            await ep.sendto(out, peer)


async def _serve_tcp(listener: trio.SocketListener, respond: Responder) -> None:
    async def one(stream: trio.abc.Stream) -> None:
        head = await stream.receive_some(2)
        (length,) = struct.unpack("!H", head)
        body = b""
        while len(body) < length:
            body += await stream.receive_some(length - len(body))
        for out in respond(dnslib.DNSRecord.parse(body)):
            await stream.send_all(struct.pack("!H", len(out)) + out)

    await trio.serve_listeners(one, [listener])


async def _resolver_with(nursery: trio.Nursery, respond: Responder, **kwargs: float) -> StubResolver:
    # The stub asks UDP and TCP on one port: take a free UDP port whose TCP twin is free too
    # (another process may hold it, as a client's ephemeral port for instance).
    for _ in range(20):
        ep = await open_udp_endpoint("127.0.0.1", 0)
        port = ep.local_address[1]
        sock = trio.socket.socket()
        try:
            await sock.bind(("127.0.0.1", port))
            break
        except OSError:
            sock.close()
            await ep.aclose()
    else:
        raise AssertionError("no port free for both UDP and TCP")
    sock.listen()
    nursery.start_soon(_serve_udp, ep, respond)
    nursery.start_soon(_serve_tcp, trio.SocketListener(sock), respond)
    return StubResolver(("127.0.0.1", port), **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(10)
async def test_follows_cname_chain_and_ignores_mismatched_answers() -> None:
    def respond(q: dnslib.DNSRecord) -> list[bytes]:
        wrong_id = _reply(q, "www.shop.test. 60 A 127.0.0.99")
        wrong_id.header.id ^= 1
        wrong_question = dnslib.DNSRecord.question("evil.test", "A").reply()
        wrong_question.header.id = q.header.id
        good = _reply(q, "www.shop.test. 300 CNAME web.shop.test.", "web.shop.test. 60 A 127.0.0.10")
        return [wrong_id.pack(), wrong_question.pack(), b"\x00garbage", good.pack()]

    async with trio.open_nursery() as nursery:
        stub = await _resolver_with(nursery, respond)
        answer = await stub.query("www.shop.test", "A")
        assert answer.records == ("127.0.0.10",)
        assert answer.name == "web.shop.test"
        assert answer.ttl == 60
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(10)
async def test_truncated_answer_is_asked_again_over_tcp() -> None:
    seen: list[str] = []

    def respond(q: dnslib.DNSRecord) -> list[bytes]:
        seen.append("q")
        if len(seen) == 1:  # the UDP question
            return [_reply(q, tc=True).pack()]
        return [
            _reply(q, "alpha.test. 300 MX 10 mx1.alpha.test.", "alpha.test. 300 MX 5 mx0.alpha.test.").pack()
        ]

    async with trio.open_nursery() as nursery:
        stub = await _resolver_with(nursery, respond)
        assert await stub.resolve_mx("alpha.test") == [(5, "mx0.alpha.test"), (10, "mx1.alpha.test")]
        assert len(seen) == 2
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(10)
async def test_error_rcode_and_silence_raise() -> None:
    async with trio.open_nursery() as nursery:
        refusing = await _resolver_with(nursery, lambda q: [_reply(q, rcode=dnslib.RCODE.REFUSED).pack()])
        with pytest.raises(DnsLookupError) as info:
            await refusing.query("example.test", "A")
        assert info.value.rcode == "REFUSED"

        silent = await _resolver_with(nursery, lambda q: [], timeout=0.02, attempts=2)
        with pytest.raises(DnsLookupError) as info:
            await silent.query("example.test", "A")
        assert info.value.rcode == "TIMEOUT"
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(10)
async def test_nxdomain_is_an_empty_answer() -> None:
    async with trio.open_nursery() as nursery:
        stub = await _resolver_with(nursery, lambda q: [_reply(q, rcode=dnslib.RCODE.NXDOMAIN).pack()])
        assert (await stub.query("nothing.test", "A")).records == ()
        assert await stub.resolve_addresses("nothing.test") == []
        nursery.cancel_scope.cancel()


def test_stub_for_the_configured_resolver() -> None:
    from netlab import config as configmod
    from netlab.aio.dns_stub import stub_for

    config = configmod.override(configmod.NetlabConfig(), "resolver", {"listen": "127.0.0.1:5399"})
    stub = stub_for(config, timeout=0.5)
    assert (stub.server, stub.timeout) == (("127.0.0.1", 5399), 0.5)
