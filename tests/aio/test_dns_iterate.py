"""The resolver driver over an in-memory network, under trio's MockClock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import dnslib
import pytest
import trio
import trio.testing

from netlab.aio.dns_iterate import IterativeResolver
from netlab.aio.endpoint import Addr, MemoryNetwork
from netlab.proto.dns_resolve import Resolver, ResolverSettings
from netlab.proto.dns_rrset import name_of
from netlab.proto.dns_wire import Transport
from tests.aio.dns_memory import MemoryUpstream
from tests.proto import dns_world as w
from tests.proto.dns_fakenet import silent

A = dnslib.QTYPE.A


@pytest.fixture
async def world(nursery: trio.Nursery) -> AsyncIterator[tuple[IterativeResolver, MemoryUpstream]]:
    async with MemoryNetwork() as network:
        upstream = MemoryUpstream(network, nursery, w.servers())
        machine = Resolver(w.HINTS, random.Random(7), ResolverSettings())
        resolver = IterativeResolver(machine, upstream)
        await nursery.start(resolver.run)
        yield resolver, upstream


async def test_resolves_through_the_hierarchy_each_query_on_a_fresh_port(
    world: tuple[IterativeResolver, MemoryUpstream], autojump_clock: trio.testing.MockClock
) -> None:
    resolver, upstream = world
    answer = await resolver.resolve(name_of("www.alias.test."), A)
    assert answer.rcode == dnslib.RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in answer.answer if rr.rtype == A) == ["127.0.0.10", "127.0.0.11"]
    assert len(upstream.sources) >= 5
    assert len(set(upstream.sources)) == len(upstream.sources)  # a new socket for every query


async def test_cached_answer_needs_no_upstream_query(
    world: tuple[IterativeResolver, MemoryUpstream], autojump_clock: trio.testing.MockClock
) -> None:
    resolver, upstream = world
    await resolver.resolve(name_of("www.shop.test."), A)
    sent = len(upstream.sources)
    start = trio.current_time()
    answer = await resolver.resolve(name_of("www.shop.test."), A)
    assert (len(upstream.sources), trio.current_time()) == (sent, start)
    assert len(answer.answer) == 2


async def test_concurrent_identical_questions_share_one_resolution(
    world: tuple[IterativeResolver, MemoryUpstream], autojump_clock: trio.testing.MockClock
) -> None:
    resolver, upstream = world
    answers: list[int] = []

    async def ask() -> None:
        answers.append(len((await resolver.resolve(name_of("mail.shop.test."), dnslib.QTYPE.MX)).answer))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(ask)
    assert answers == [1] * 50
    assert len(upstream.sources) == 4  # priming, test., shop.test., mail.shop.test.


async def test_silent_server_times_out_to_servfail(
    world: tuple[IterativeResolver, MemoryUpstream], autojump_clock: trio.testing.MockClock
) -> None:
    resolver, upstream = world
    upstream.servers[w.SHOP] = silent
    start = trio.current_time()
    answer = await resolver.resolve(name_of("www.shop.test."), A)
    assert answer.rcode == dnslib.RCODE.SERVFAIL
    assert trio.current_time() - start == pytest.approx(3 * 0.01 + 0.4 + 0.8 + 1.6)


async def test_truncated_answer_is_fetched_over_tcp(
    world: tuple[IterativeResolver, MemoryUpstream], autojump_clock: trio.testing.MockClock
) -> None:
    resolver, upstream = world
    honest = upstream.servers[w.SHOP]

    def truncating(
        query: dnslib.DNSRecord, transport: Transport, server: Addr
    ) -> list[tuple[float, bytes, Addr]]:
        out = honest(query, transport, server)
        if transport is Transport.UDP:
            reply = dnslib.DNSRecord.parse(out[0][1])
            reply.rr = []
            reply.header.tc = 1
            return [(out[0][0], reply.pack(), server)]
        return out

    upstream.servers[w.SHOP] = truncating
    answer = await resolver.resolve(name_of("www.shop.test."), A)
    assert len(answer.answer) == 2
    assert upstream.tcp_queries == 1
