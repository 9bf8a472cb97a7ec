"""The link relay over in-memory endpoints, with scripted impairments and exact virtual times."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from netlab.aio.endpoint import Addr, MemoryEndpoint, MemoryNetwork
from netlab.aio.relay import DirectionStats, LinkRelay


class Scripted:
    """An impairment whose fate for the n-th datagram is ``script(n, data)``: delays, one per copy."""

    def __init__(self, script: Callable[[int, bytes], list[float]] | None = None) -> None:
        self._script = script or (lambda n, data: [0.0])
        self._n = 0

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        fate = self._script(self._n, data)
        self._n += 1
        return [(now + delay, data) for delay in fate]


async def _echo_server(ep: MemoryEndpoint, seen: list[Addr]) -> None:
    while True:
        data, addr = await ep.recvfrom()
        seen.append(addr)
        await ep.sendto(b"echo " + data, addr)


async def _start(
    net: MemoryNetwork,
    nursery: trio.Nursery,
    *,
    up: Scripted | None = None,
    down: Scripted | None = None,
    idle_timeout: float = 120.0,
    max_clients: int = 256,
) -> tuple[LinkRelay, list[Addr]]:
    server = net.endpoint(port=9001)
    seen: list[Addr] = []
    nursery.start_soon(_echo_server, server, seen)

    async def open_endpoint() -> MemoryEndpoint:
        return net.endpoint()

    relay = LinkRelay(
        net.endpoint(port=9000),
        server.local_address,
        upstream=up or Scripted(),
        downstream=down or Scripted(),
        open_endpoint=open_endpoint,
        idle_timeout=idle_timeout,
        max_clients=max_clients,
    )
    await nursery.start(relay.run)
    return relay, seen


async def test_clients_get_their_own_replies_through_their_own_relay_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, seen = await _start(net, nursery)
        a, b = net.endpoint(), net.endpoint()
        for i in range(3):
            await a.sendto(b"a%d" % i, relay.listen.local_address)
            await b.sendto(b"b%d" % i, relay.listen.local_address)
        for ep, tag in ((a, b"a"), (b, b"b")):
            for i in range(3):
                data, src = await ep.recvfrom()
                assert data == b"echo %s%d" % (tag, i)
                assert src == relay.listen.local_address
        assert len(set(seen)) == 2
        assert not {a.local_address, b.local_address} & set(seen)
        assert relay.stats.clients == 2
        assert relay.stats.upstream == DirectionStats(received=6, delivered=6)
        assert relay.stats.downstream == DirectionStats(received=6, delivered=6)
        nursery.cancel_scope.cancel()


async def test_delay_loss_duplication_and_reordering(autojump_clock: trio.testing.MockClock) -> None:
    # Upstream: the first datagram is held 50 ms (so the second overtakes it), the third is lost,
    # the fourth arrives twice.  Downstream adds 10 ms to everything.
    fates = {0: [0.050], 1: [0.0], 2: [], 3: [0.0, 0.001]}
    up = Scripted(lambda n, data: fates[n])
    down = Scripted(lambda n, data: [0.010])
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, _ = await _start(net, nursery, up=up, down=down)
        client = net.endpoint()
        start = trio.current_time()
        for i in range(4):
            await client.sendto(b"%d" % i, relay.listen.local_address)
        arrivals = []
        for _ in range(4):
            data, _src = await client.recvfrom()
            arrivals.append((data, round(trio.current_time() - start, 6)))
        assert arrivals == [
            (b"echo 1", 0.010),
            (b"echo 3", 0.010),
            (b"echo 3", 0.011),
            (b"echo 0", 0.060),
        ]
        with trio.move_on_after(1):
            await client.recvfrom()
            raise AssertionError("the lost datagram came through")
        assert relay.stats.upstream == DirectionStats(received=4, delivered=4)
        nursery.cancel_scope.cancel()


async def test_idle_clients_are_forgotten_and_their_socket_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, seen = await _start(net, nursery, idle_timeout=30.0)
        client = net.endpoint()
        await client.sendto(b"x", relay.listen.local_address)
        await client.recvfrom()
        await trio.sleep(20)
        await client.sendto(b"y", relay.listen.local_address)  # keeps it alive
        await client.recvfrom()
        await trio.sleep(29)
        assert relay.stats.expired == 0
        await trio.sleep(2)
        assert relay.stats.expired == 1
        # The old relay socket is gone from the network; a new datagram opens a new one.
        old = seen[-1]
        await net.endpoint(*old).aclose()  # binding succeeds only because it was released
        await client.sendto(b"z", relay.listen.local_address)
        assert (await client.recvfrom())[0] == b"echo z"
        assert seen[-1] != old
        assert relay.stats.clients == 2
        nursery.cancel_scope.cancel()


async def test_relay_sockets_ignore_anyone_but_the_server(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, seen = await _start(net, nursery)
        client = net.endpoint()
        await client.sendto(b"x", relay.listen.local_address)
        await client.recvfrom()
        intruder = net.endpoint("127.0.0.9")  # another host: the relay follows the server's host only
        await intruder.sendto(b"spoofed reply", seen[0])
        with trio.move_on_after(1) as scope:
            await client.recvfrom()
        assert scope.cancelled_caught
        assert relay.stats.downstream.received == 1
        nursery.cancel_scope.cancel()


async def test_client_follows_the_port_the_server_answers_from(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """TFTP answers from a fresh port per transfer (its TID, RFC 1350 section 4): the relay must
    send the client's next datagrams there, not to the port of the first request."""
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, seen = await _start(net, nursery)
        client = net.endpoint()
        await client.sendto(b"request", relay.listen.local_address)
        assert (await client.recvfrom())[0] == b"echo request"  # from the server on port 9001
        transfer = net.endpoint(port=9002)  # the server's transfer socket on the same host
        await transfer.sendto(b"DATA 1", seen[0])
        assert await client.recvfrom() == (b"DATA 1", relay.listen.local_address)
        await client.sendto(b"ACK 1", relay.listen.local_address)
        assert await transfer.recvfrom() == (b"ACK 1", seen[0])
        nursery.cancel_scope.cancel()


async def test_too_many_clients_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        relay, _ = await _start(net, nursery, max_clients=2)
        clients = [net.endpoint() for _ in range(3)]
        for ep in clients:
            await ep.sendto(b"hi", relay.listen.local_address)
        await trio.sleep(1)
        assert relay.stats.clients == 2
        assert relay.stats.refused == 1
        nursery.cancel_scope.cancel()
