"""The trio driver of the reliable transport, over in-memory networks in virtual time."""

from __future__ import annotations

import errno
import hashlib
import random

import pytest
import trio
import trio.testing

from netlab.aio.endpoint import Addr, MemoryEndpoint, MemoryNetwork
from netlab.aio.rdt import RdtListener, open_rdt_stream
from netlab.aio.rdt_stream import RdtStream
from netlab.link.model import LinkModel
from netlab.transport.engine import ConnState, TransportParams
from netlab.transport.segment import Segment, SegmentType, encode_segment
from tests.aio.rdt_helpers import PARAMS, SERVER, echo, link_route, read_all, start_listener


def _lossy(seed: int) -> MemoryNetwork:
    def model(src: Addr) -> LinkModel:
        rng = random.Random(f"{seed}{src}")
        return LinkModel(rng, loss=0.1, duplicate=0.05, reorder=0.1, corrupt=0.02, delay=0.010, jitter=0.002)

    return MemoryNetwork(link_route(model))


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
async def test_lossy_reordering_link_delivers_exact_bytes(
    protocol: str, autojump_clock: trio.testing.MockClock
) -> None:
    data = random.Random(7).randbytes(60_000)
    params = TransportParams(protocol=protocol, window=1 if protocol == "saw" else 8, seq_bits=8, mss=1000)
    async with _lossy(seed=3) as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, echo)
        stream = await open_rdt_stream(*SERVER, params, endpoint=net.endpoint(), nursery=nursery)
        await stream.send_all(data)
        await stream.send_eof()
        assert await read_all(stream) == data
        await stream.aclose()
        stats = stream.connection.stats
        assert stats.retransmissions > 0  # the link really was lossy
        assert stats.bytes_sent == len(data)
        nursery.cancel_scope.cancel()


async def test_half_close_each_way(autojump_clock: trio.testing.MockClock) -> None:
    async def server_talks_after_client_eof(stream: RdtStream) -> None:
        assert await read_all(stream) == b"question"
        # The client's direction is closed; ours is still open.
        await stream.send_all(b"answer, ")
        await trio.sleep(5)
        await stream.send_all(b"much later")
        await stream.send_eof()

    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, server_talks_after_client_eof)
        client = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        await client.send_all(b"question")
        await client.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"more")
        assert await read_all(client) == b"answer, much later"
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_server_closes_first_and_client_keeps_sending(autojump_clock: trio.testing.MockClock) -> None:
    async def greeter(stream: RdtStream) -> None:
        await stream.send_all(b"hello")
        await stream.send_eof()
        assert await read_all(stream) == b"x" * 50_000

    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, greeter)
        client = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        assert await read_all(client) == b"hello"
        await client.send_all(b"x" * 50_000)
        await client.send_eof()
        await client.aclose()
        assert client.connection.state in (ConnState.TIME_WAIT, ConnState.CLOSED)
        nursery.cancel_scope.cancel()


async def test_many_peers_on_one_listener(autojump_clock: trio.testing.MockClock) -> None:
    async def one_client(net: MemoryNetwork, i: int, results: dict[int, bytes]) -> None:
        stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint())
        await stream.send_all(b"%d:" % i + bytes([i]) * (5000 + 1000 * i))
        await stream.send_eof()
        results[i] = await read_all(stream)
        await stream.aclose()

    results: dict[int, bytes] = {}
    async with _lossy(seed=11) as net, trio.open_nursery() as nursery:
        listener = await start_listener(net, nursery, echo)
        async with trio.open_nursery() as clients:
            for i in range(6):
                clients.start_soon(one_client, net, i, results)
        assert results == {i: b"%d:" % i + bytes([i]) * (5000 + 1000 * i) for i in range(6)}
        assert listener.demux.stats.sessions == 6
        nursery.cancel_scope.cancel()


async def test_vanished_peer_fails_in_bounded_time_and_listener_serves_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gone: set[Addr] = set()
    failed_at: list[tuple[float, str]] = []

    def route(data: bytes, src: Addr, dst: Addr, now: float) -> list[tuple[float, bytes]]:
        return [] if src in gone or dst in gone else [(0.001, data)]

    async def talker(stream: RdtStream) -> None:
        try:
            await stream.send_all(b"z" * 200_000)
            await read_all(stream)
        except trio.BrokenResourceError as exc:
            failed_at.append((trio.current_time(), str(exc)))

    async with MemoryNetwork(route) as net, trio.open_nursery() as nursery:
        listener = await start_listener(net, nursery, talker)
        endpoint = net.endpoint()
        ghost = await open_rdt_stream(*SERVER, PARAMS, endpoint=endpoint, nursery=nursery)
        assert await ghost.receive_some() == b"z" * PARAMS.mss
        gone.add(endpoint.local_address)  # the client's host drops off the network, silently
        vanished = trio.current_time()
        while not failed_at:
            await trio.sleep(1)
        when, reason = failed_at[0]
        assert "no acknowledgement after 8 retransmissions" in reason
        # Eight doubling timeouts from an RTO of at most a second: bounded, well under 10 min.
        assert when - vanished < 600
        await trio.sleep(1)
        assert listener.demux.active == 0
        # Another client is served normally afterwards.
        other = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        assert len(await other.receive_some()) == PARAMS.mss
        assert listener.demux.active == 1
        nursery.cancel_scope.cancel()


async def test_strangers_datagrams_are_counted_and_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        listener = await start_listener(net, nursery, echo)
        stranger = net.endpoint()
        await stranger.sendto(b"\x00garbage", SERVER)
        await stranger.sendto(encode_segment(Segment(SegmentType.ACK, seq=5, ack=9, window=4)), SERVER)
        await stranger.sendto(encode_segment(Segment(SegmentType.FIN, seq=1, ack=1, window=4)), SERVER)
        await trio.sleep(1)
        assert listener.demux.stats.dropped_stranger == 3
        assert listener.demux.stats.sessions == 0
        # A stranger writing to a client's socket is dropped before the machine sees it.
        client_ep = net.endpoint()
        client = await open_rdt_stream(*SERVER, PARAMS, endpoint=client_ep, nursery=nursery)
        await stranger.sendto(b"junk", client_ep.local_address)
        await client.send_all(b"ok")
        await client.send_eof()
        assert await read_all(client) == b"ok"
        assert client.strangers_dropped == 1
        assert client.connection.stats.corrupt_dropped == 0
        nursery.cancel_scope.cancel()


class _SlowSender:
    """An endpoint whose sends take 10 ms (a busy host): its driver falls behind a burst."""

    def __init__(self, inner: MemoryEndpoint) -> None:
        self._inner = inner

    @property
    def local_address(self) -> Addr:
        return self._inner.local_address

    async def sendto(self, data: bytes, addr: Addr) -> None:
        await trio.sleep(0.010)
        await self._inner.sendto(data, addr)

    async def recvfrom(self) -> tuple[bytes, Addr]:
        return await self._inner.recvfrom()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_full_inbox_drops_are_counted(autojump_clock: trio.testing.MockClock) -> None:
    # The link delivers one of the client's data segments 40 times at once to a server whose
    # driver is slow: its inbox of 16 overflows, the extra copies are dropped and counted, and
    # the data still arrives intact.
    copies = {"done": False}

    def route(data: bytes, src: Addr, dst: Addr, now: float) -> list[tuple[float, bytes]]:
        if dst == SERVER and len(data) > 500 and not copies["done"]:
            copies["done"] = True
            return [(0.0, data)] * 40
        return [(0.0, data)]

    async with MemoryNetwork(route) as net, trio.open_nursery() as nursery:
        listener = RdtListener(_SlowSender(net.endpoint(*SERVER)), PARAMS, queue_size=16)
        await nursery.start(listener.serve, echo)
        client = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        await client.send_all(b"y" * 3000)
        await client.send_eof()
        assert await read_all(client) == b"y" * 3000
        assert listener.demux.stats.dropped_full >= 20
        nursery.cancel_scope.cancel()


async def test_nothing_listening_fails_with_the_reason(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net:
        start = trio.current_time()
        params = TransportParams(max_retries=3, initial_rto=0.5)
        with pytest.raises(trio.BrokenResourceError, match="no answer to our SYN after 3 retransmissions"):
            await open_rdt_stream(*SERVER, params, endpoint=net.endpoint())
        # 0.5 + 1 + 2 + 4 seconds of doubling timeouts, then give up.
        assert trio.current_time() - start == pytest.approx(7.5, abs=0.01)


class _Unreachable(_SlowSender):
    """An endpoint whose every send fails, as with no route to the host."""

    async def sendto(self, data: bytes, addr: Addr) -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


async def test_a_socket_that_cannot_send_fails_the_connection(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net:
        with pytest.raises(
            trio.BrokenResourceError, match=r"cannot send to 127\.0\.0\.1:9001: Network is unreachable"
        ):
            await open_rdt_stream(*SERVER, PARAMS, endpoint=_Unreachable(net.endpoint()))


async def test_backpressure_and_flow_control(autojump_clock: trio.testing.MockClock) -> None:
    # The server does not read for 30 s: its buffers fill, its advertised window closes, our
    # send buffer fills and send_all waits (without failing: the persist timer keeps probing).
    # Then it reads, and everything flows.
    async def lazy(stream: RdtStream) -> None:
        await trio.sleep(30)
        digest = hashlib.sha256(await read_all(stream)).hexdigest()
        await stream.send_all(digest.encode())
        await stream.send_eof()

    params = TransportParams(window=8, seq_bits=8, mss=1000, send_buffer=16_000, receive_buffer=20_000)
    data = random.Random(5).randbytes(300_000)
    sent = trio.Event()
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, lazy, params, receive_buffer=10_000)
        client = await open_rdt_stream(*SERVER, params, endpoint=net.endpoint(), nursery=nursery)

        async def sender() -> None:
            await client.send_all(data)
            await client.send_eof()
            sent.set()

        nursery.start_soon(sender)
        await trio.sleep(25)
        assert not sent.is_set()
        # What the peer took is bounded by its stream buffer plus its machine's buffer, plus at
        # most one zero-window probe per (minimum) RTO.
        probes = 25 / params.min_rto + 1
        assert 20_000 <= client.bytes_acknowledged <= 10_000 + 20_000 + probes * params.mss
        assert client.failure is None
        assert await read_all(client) == hashlib.sha256(data).hexdigest().encode()
        assert sent.is_set()
        nursery.cancel_scope.cancel()


async def test_abort_resets_the_peer(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[BaseException] = []

    async def handler(stream: RdtStream) -> None:
        try:
            await read_all(stream)
        except trio.BrokenResourceError as exc:
            seen.append(exc)

    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, handler)
        client = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        await client.send_all(b"abc")
        await trio.sleep(1)
        client.abort()
        await trio.sleep(1)
        assert [str(e) for e in seen] == ["connection reset by peer"]
        with pytest.raises(trio.BrokenResourceError, match="aborted"):
            await client.send_all(b"x")
        nursery.cancel_scope.cancel()


async def test_system_task_driver_outlives_the_call(autojump_clock: trio.testing.MockClock) -> None:
    # No nursery: the driver runs as a system task, like a kernel's TCP.
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, echo)
        stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint())
        await stream.send_all(b"ping")
        await stream.send_eof()
        assert await read_all(stream) == b"ping"
        await stream.aclose()
        await trio.sleep(PARAMS.linger + 1)
        assert stream.finished
        assert stream.connection.state is ConnState.CLOSED
        nursery.cancel_scope.cancel()


async def test_misuse_is_reported(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, echo)
        stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        with pytest.raises(ValueError, match="max_bytes"):
            await stream.receive_some(0)
        async with trio.open_nursery() as inner:
            inner.start_soon(stream.receive_some)
            await trio.sleep(0.01)
            with pytest.raises(trio.BusyResourceError):
                await stream.receive_some()
            await stream.send_eof()
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        nursery.cancel_scope.cancel()


async def test_small_reads_of_large_segments(autojump_clock: trio.testing.MockClock) -> None:
    data = random.Random(9).randbytes(20_000)
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await start_listener(net, nursery, echo)
        stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint(), nursery=nursery)
        await stream.send_all(data)
        await stream.send_eof()
        got = bytearray()
        sizes = [1, 7, 999, 1000, 1001, 4096]
        while chunk := await stream.receive_some(sizes[len(got) % len(sizes)]):
            assert 1 <= len(chunk) <= sizes[(len(got)) % len(sizes)]
            got += chunk
        assert got == data
        nursery.cancel_scope.cancel()
