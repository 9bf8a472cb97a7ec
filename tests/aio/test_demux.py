"""The per-peer demultiplexer: sessions per address, drops counted, graceful stop."""

from __future__ import annotations

import trio
import trio.testing

from netlab.aio.demux import PeerDemux, Session
from netlab.aio.endpoint import Addr, MemoryNetwork


async def _echo(peer: Addr, inbox: trio.MemoryReceiveChannel[bytes], demux: PeerDemux) -> None:
    async for data in inbox:
        if data == b"bye":
            return
        await demux.endpoint.sendto(b"echo " + data, peer)


async def test_each_peer_gets_its_own_session(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        demux = PeerDemux(net.endpoint(port=7))
        seen: list[Addr] = []

        def accept(data: bytes, peer: Addr) -> Session | None:
            seen.append(peer)
            return lambda p, inbox: _echo(p, inbox, demux)

        await nursery.start(demux.serve, accept)
        clients = [net.endpoint() for _ in range(5)]
        for round_ in range(3):
            for i, ep in enumerate(clients):
                await ep.sendto(f"{i}.{round_}".encode(), demux.endpoint.local_address)
        for i, ep in enumerate(clients):
            got = [(await ep.recvfrom())[0] for _ in range(3)]
            assert got == [f"echo {i}.{r}".encode() for r in range(3)]
        assert sorted(seen) == sorted(ep.local_address for ep in clients)
        assert demux.active == 5
        for ep in clients:
            await ep.sendto(b"bye", demux.endpoint.local_address)
        await trio.sleep(1)
        assert demux.active == 0
        assert demux.stats.sessions == 5
        nursery.cancel_scope.cancel()


async def test_strangers_are_dropped_and_counted(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        demux = PeerDemux(net.endpoint())
        await nursery.start(demux.serve, lambda data, peer: None)
        stranger = net.endpoint()
        for _ in range(4):
            await stranger.sendto(b"\xff garbage", demux.endpoint.local_address)
        await trio.sleep(1)
        assert demux.stats.dropped_stranger == 4
        assert demux.stats.received == 4
        assert demux.active == 0
        nursery.cancel_scope.cancel()


async def test_full_inbox_drops_and_counts(autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()

    async def slow(peer: Addr, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        await release.wait()
        assert len(_drain(inbox)) == 4

    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        demux = PeerDemux(net.endpoint(), queue_size=4)
        await nursery.start(demux.serve, lambda data, peer: slow)
        client = net.endpoint()
        for i in range(10):
            await client.sendto(bytes([i]), demux.endpoint.local_address)
        await trio.sleep(1)
        assert demux.stats.dropped_full == 6
        release.set()
        await trio.sleep(1)
        assert demux.active == 0
        nursery.cancel_scope.cancel()


def _drain(inbox: trio.MemoryReceiveChannel[bytes]) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(inbox.receive_nowait())
        except trio.WouldBlock:
            return got


async def test_a_failing_session_does_not_stop_the_others(autojump_clock: trio.testing.MockClock) -> None:
    async def broken(peer: Addr, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        raise RuntimeError("bug")

    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        demux = PeerDemux(net.endpoint())

        def accept(data: bytes, peer: Addr) -> Session | None:
            return broken if data == b"crash" else (lambda p, inbox: _echo(p, inbox, demux))

        await nursery.start(demux.serve, accept)
        a, b = net.endpoint(), net.endpoint()
        await a.sendto(b"crash", demux.endpoint.local_address)
        await trio.sleep(1)
        await b.sendto(b"hi", demux.endpoint.local_address)
        assert (await b.recvfrom())[0] == b"echo hi"
        assert demux.stats.failed == 1
        nursery.cancel_scope.cancel()


async def test_stopping_refuses_new_peers_and_waits_for_running_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopping = trio.Event()
    async with MemoryNetwork() as net:
        demux = PeerDemux(net.endpoint())
        served = trio.Event()
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                await demux.serve(
                    lambda data, peer: lambda p, inbox: _echo(p, inbox, demux), stopping=stopping
                )
                served.set()

            nursery.start_soon(run)
            await trio.sleep(0.1)
            old, new = net.endpoint(), net.endpoint()
            await old.sendto(b"1", demux.endpoint.local_address)
            assert (await old.recvfrom())[0] == b"echo 1"
            stopping.set()
            await trio.sleep(1)
            await new.sendto(b"2", demux.endpoint.local_address)
            await old.sendto(b"3", demux.endpoint.local_address)
            assert (await old.recvfrom())[0] == b"echo 3"
            await trio.sleep(1)
            assert demux.stats.refused == 1
            assert not served.is_set()
            await old.sendto(b"bye", demux.endpoint.local_address)
            await trio.sleep(1)
            assert served.is_set()
