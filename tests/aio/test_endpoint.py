"""Datagram endpoints: the in-memory network under MockClock, and a real UDP round trip."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import trio
import trio.testing

from netlab.aio.endpoint import Addr, MemoryNetwork, open_udp_endpoint


async def test_memory_network_delivers_with_source_address() -> None:
    async with MemoryNetwork() as net:
        a, b = net.endpoint(), net.endpoint("127.0.0.2", 53)
        await a.sendto(b"hello", ("127.0.0.2", 53))
        assert await b.recvfrom() == (b"hello", a.local_address)


async def test_route_decides_loss_duplication_and_delay(autojump_clock: trio.testing.MockClock) -> None:
    def route(data: bytes, src: Addr, dst: Addr, now: float) -> Iterable[tuple[float, bytes]]:
        if data == b"lost":
            return []
        if data == b"twice":
            return [(0.0, data), (0.0, data)]
        return [(0.5, data)]  # everything else arrives half a second later

    async with MemoryNetwork(route) as net:
        a, b = net.endpoint(), net.endpoint()
        for msg in (b"late", b"lost", b"twice"):
            await a.sendto(msg, b.local_address)
        start = trio.current_time()
        got = [(await b.recvfrom())[0] for _ in range(3)]
        assert got == [b"twice", b"twice", b"late"]
        assert trio.current_time() - start == 0.5


async def test_full_queue_and_unbound_address_drop_and_count() -> None:
    async with MemoryNetwork(queue_size=2) as net:
        a, b = net.endpoint(), net.endpoint()
        for i in range(5):
            await a.sendto(bytes([i]), b.local_address)
        await a.sendto(b"x", ("127.0.0.9", 9))
        assert net.dropped_full == 3
        assert net.dropped_unbound == 1
        assert [(await b.recvfrom())[0] for _ in range(2)] == [b"\x00", b"\x01"]


async def test_binding_twice_is_refused() -> None:
    async with MemoryNetwork() as net:
        net.endpoint("127.0.0.1", 7)
        with pytest.raises(OSError, match="in use"):
            net.endpoint("127.0.0.1", 7)


async def test_udp_endpoint_round_trip() -> None:
    with trio.fail_after(5):
        a = await open_udp_endpoint("127.0.0.1", 0, rcvbuf=1 << 20)
        b = await open_udp_endpoint("127.0.0.1", 0)
        await a.sendto(b"ping", b.local_address)
        data, peer = await b.recvfrom()
        assert (data, peer) == (b"ping", a.local_address)
        await a.aclose()
        await b.aclose()
