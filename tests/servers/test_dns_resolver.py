"""The resolver server: its handler over in-memory networks, and a real-socket run on loopback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

import dnslib
import pytest
import trio
import trio.testing

from netlab.aio.dns_fresh import CheckedServer
from netlab.aio.dns_iterate import IterativeResolver
from netlab.aio.dns_server import DnsServer, DnsServerSettings
from netlab.aio.dns_stub import StubResolver
from netlab.aio.endpoint import MemoryNetwork, open_udp_endpoint
from netlab.aio.shutdown import Lifetime
from netlab.config import ResolverConfig
from netlab.proto.dns_auth import Authority
from netlab.proto.dns_hints import RootHints
from netlab.proto.dns_zone import parse_zone_text
from servers.dns_resolver import ResolverHandler, build_resolver, load_root_hints, serve
from tests.aio.dns_memory import MemoryUpstream
from tests.proto import dns_world as w

RESOLVER = ("127.0.0.1", 53)


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[tuple[MemoryNetwork, CheckedServer]]:
    """A resolver at 127.0.0.1:53 on an in-memory network that clients can reach from any address."""
    async with MemoryNetwork() as clients, MemoryNetwork() as upstream_net:
        upstream = MemoryUpstream(upstream_net, nursery, w.servers())
        cfg = ResolverConfig(allow=("127.0.0.0/8",))
        resolver = IterativeResolver(build_resolver(cfg, w.HINTS, rng=random.Random(5)), upstream)
        await nursery.start(resolver.run)
        settings = DnsServerSettings(query_log=False, replay_cache=100)
        handler = ResolverHandler(resolver, cfg.allow)
        server = CheckedServer(handler, handler.allowed, settings, clock=trio.current_time)
        nursery.start_soon(server.serve_udp, clients.endpoint(*RESOLVER))
        yield clients, server


@pytest.fixture
def resolver_net(served: tuple[MemoryNetwork, CheckedServer]) -> MemoryNetwork:
    return served[0]


async def _ask(net: MemoryNetwork, query: dnslib.DNSRecord, source: str = "127.0.0.1") -> dnslib.DNSRecord:
    ep = net.endpoint(source, 0)
    await ep.sendto(query.pack(), RESOLVER)
    data, _ = await ep.recvfrom()
    await ep.aclose()
    return dnslib.DNSRecord.parse(data)


async def test_answers_recursively_with_ra_and_without_aa(
    resolver_net: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await _ask(resolver_net, dnslib.DNSRecord.question("web.shop.test", "A"))
    assert reply.header.rcode == dnslib.RCODE.NOERROR
    assert (reply.header.ra, reply.header.aa, reply.header.rd) == (1, 0, 1)
    assert [dnslib.QTYPE.get(rr.rtype) for rr in reply.rr] == ["CNAME", "A", "A"]


async def test_negative_answer_carries_the_soa(
    resolver_net: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await _ask(resolver_net, dnslib.DNSRecord.question("nope.shop.test", "A"))
    assert reply.header.rcode == dnslib.RCODE.NXDOMAIN
    assert [dnslib.QTYPE.get(rr.rtype) for rr in reply.auth] == ["SOA"]


async def test_clients_outside_the_allowed_networks_are_refused(
    resolver_net: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await _ask(resolver_net, dnslib.DNSRecord.question("www.shop.test", "A"), source="192.0.2.7")
    assert reply.header.rcode == dnslib.RCODE.REFUSED
    assert reply.rr == []


async def test_without_rd_only_the_cache_answers(
    resolver_net: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    norecurse = dnslib.DNSRecord.question("www.shop.test", "A")
    norecurse.header.rd = 0
    assert (await _ask(resolver_net, norecurse)).header.rcode == dnslib.RCODE.REFUSED
    await _ask(resolver_net, dnslib.DNSRecord.question("www.shop.test", "A"))
    cached = await _ask(resolver_net, norecurse)
    assert (cached.header.rcode, len(cached.rr)) == (dnslib.RCODE.NOERROR, 2)


async def test_zone_transfers_are_refused(
    resolver_net: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await _ask(resolver_net, dnslib.DNSRecord.question("shop.test", "AXFR"))
    assert reply.header.rcode == dnslib.RCODE.REFUSED


async def test_kept_replies_expire_within_a_second_and_are_never_given_to_strangers(
    served: tuple[MemoryNetwork, CheckedServer], autojump_clock: trio.testing.MockClock
) -> None:
    net, server = served
    question = dnslib.DNSRecord.question("www.shop.test", "A")
    first = await _ask(net, question)
    await trio.sleep(0.5)
    again = await _ask(net, question)
    assert server.counters.replayed == 1
    assert [rr.ttl for rr in again.rr] == [rr.ttl for rr in first.rr]
    assert (await _ask(net, question, source="192.0.2.7")).header.rcode == dnslib.RCODE.REFUSED
    await trio.sleep(300 - 0.5 - 1.0)
    later = await _ask(net, question)
    assert server.counters.replayed == 1  # the kept reply was too old: answered afresh
    assert {rr.ttl for rr in later.rr} == {1}  # counted down (received at 0.03 s, rounded up)


async def test_failures_are_never_kept_for_replay(
    served: tuple[MemoryNetwork, CheckedServer], autojump_clock: trio.testing.MockClock
) -> None:
    net, server = served
    norecurse = dnslib.DNSRecord.question("www.shop.test", "A")
    norecurse.header.rd = 0
    assert (await _ask(net, norecurse)).header.rcode == dnslib.RCODE.REFUSED  # nothing cached yet
    answer = await _ask(net, dnslib.DNSRecord.question("www.shop.test", "A"))
    assert answer.header.rcode == dnslib.RCODE.NOERROR
    assert server.counters.replayed == 0


def test_shipped_root_hints_are_the_real_roots() -> None:
    hints = load_root_hints()
    assert len(hints.servers) == 13
    assert "198.41.0.4" in hints.addresses()


async def _free_port(hosts: list[str]) -> int:
    """A port free for UDP and TCP on every one of ``hosts``."""
    for _ in range(50):
        probe = await open_udp_endpoint(hosts[0], 0)
        port = probe.local_address[1]
        await probe.aclose()
        socks = []
        try:
            for host in hosts:
                for kind in (trio.socket.SOCK_DGRAM, trio.socket.SOCK_STREAM):
                    sock = trio.socket.socket(trio.socket.AF_INET, kind)
                    socks.append(sock)
                    await sock.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no common free port")


async def _authority(nursery: trio.Nursery, host: str, port: int, authority: Authority) -> None:
    async def handle(query: object) -> dnslib.DNSRecord:
        return authority.answer(query.message)  # type: ignore[attr-defined]

    server = DnsServer(handle, DnsServerSettings(query_log=False))
    nursery.start_soon(server.serve_udp, await open_udp_endpoint(host, port))
    listeners = await trio.open_tcp_listeners(port, host=host)
    nursery.start_soon(partial(server.serve_tcp, listeners))


LOOPBACK_ZONES = {
    "127.0.0.201": (
        ".",
        ". 86400 SOA a.root. host.root. 1 2 3 4 300\n. 86400 NS a.root.\n"
        "a.root. 86400 A 127.0.0.201\ntest. 86400 NS ns1.test.\nns1.test. 86400 A 127.0.0.202\n",
    ),
    "127.0.0.202": (
        "test.",
        "test. 86400 SOA ns1.test. host.test. 1 2 3 4 300\ntest. 86400 NS ns1.test.\n"
        "ns1.test. 86400 A 127.0.0.202\nshop.test. 86400 NS ns1.shop.test.\n"
        "ns1.shop.test. 86400 A 127.0.0.203\n",
    ),
    "127.0.0.203": (
        "shop.test.",
        "shop.test. 3600 SOA ns1.shop.test. host.shop.test. 1 2 3 4 300\n"
        "shop.test. 3600 NS ns1.shop.test.\nns1.shop.test. 3600 A 127.0.0.203\n"
        "www.shop.test. 300 A 127.0.0.10\nwww.shop.test. 300 A 127.0.0.11\n"
        "web.shop.test. 300 CNAME www.shop.test.\nmail.shop.test. 300 MX 10 mx.shop.test.\n",
    ),
}


@pytest.mark.timeout(30)
async def test_real_sockets_end_to_end_through_the_stub_client(nursery: trio.Nursery) -> None:
    """Root, test. and shop.test. servers on 127.0.0.x, the resolver in front, the stub asking."""
    port = await _free_port(list(LOOPBACK_ZONES))
    for host, (origin, text) in LOOPBACK_ZONES.items():
        await _authority(nursery, host, port, Authority([parse_zone_text(text, origin=origin)]))
    lifetime = Lifetime()
    cfg = replace(ResolverConfig(), listen="127.0.0.1:0", upstream_port=port)
    lines = await nursery.start(serve, cfg, RootHints.from_addresses(["127.0.0.201"]), lifetime)
    host, _, port_text = lines[0].split()[3].rpartition(":")
    stub = StubResolver((host, int(port_text)), timeout=2.0)
    answer = await stub.query("web.shop.test", "A")
    assert sorted(answer.records) == ["127.0.0.10", "127.0.0.11"]
    assert await stub.resolve_mx("mail.shop.test") == [(10, "mx.shop.test")]
    assert (await stub.query("www.nowhere.test", "A")).records == ()
    lifetime.stop()
