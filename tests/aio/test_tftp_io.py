"""The transfer socket's fast path on real loopback sockets: batched (segmented) sends arrive
as the same datagrams, in order, whatever their sizes."""

from __future__ import annotations

import pytest
import trio

from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.tftp_io import CHECKPOINT_EVERY, EndpointIo, SocketIo, transfer_io

BATCHES = {
    "one window": [bytes([i]) * 1432 for i in range(16)],
    "window ending short": [bytes([i]) * 516 for i in range(7)] + [b"end"],
    "more than 64 segments": [i.to_bytes(2, "big") * 50 for i in range(150)],
    "more than 64 KB": [bytes([i]) * 20_004 for i in range(9)],
    "mixed sizes": [b"a" * 10, b"b" * 10, b"c" * 700, b"d" * 10, b"", b"e" * 3, b"f" * 3],
}


@pytest.mark.parametrize("datagrams", list(BATCHES.values()), ids=list(BATCHES))
async def test_batches_arrive_as_the_same_datagrams(datagrams: list[bytes]) -> None:
    sender, receiver = await open_udp_endpoint(rcvbuf=4 << 20), await open_udp_endpoint(rcvbuf=4 << 20)
    io = transfer_io(sender)
    assert isinstance(io, SocketIo)
    with trio.fail_after(10):
        await io.send(datagrams, receiver.local_address)
        received = [(await receiver.recvfrom())[0] for _ in datagrams]
    assert received == datagrams
    assert io.segmentation  # Linux 4.18+ segments on loopback; nothing fell back
    io.close()
    await sender.aclose()
    await receiver.aclose()


async def test_receive_takes_waiting_datagrams_and_yields_now_and_then() -> None:
    sender, receiver = await open_udp_endpoint(), await open_udp_endpoint(rcvbuf=1 << 20)
    io = SocketIo(receiver)
    count = 2 * CHECKPOINT_EVERY + 1
    for i in range(count):
        await sender.sendto(i.to_bytes(4, "big"), receiver.local_address)
    with trio.fail_after(10):
        got = [await io.receive() for _ in range(count)]
    assert [int.from_bytes(data, "big") for data, _ in got] == list(range(count))
    assert {addr for _, addr in got} == {sender.local_address}
    with trio.move_on_after(0.05) as scope:
        await io.receive()  # nothing left: it waits, and can be cancelled while waiting
    assert scope.cancelled_caught
    io.close()
    await sender.aclose()
    await receiver.aclose()


async def test_other_endpoints_use_their_own_methods() -> None:
    from netlab.aio.endpoint import MemoryNetwork

    async with MemoryNetwork() as net:
        a, b = net.endpoint(), net.endpoint()
        io = transfer_io(a)
        assert isinstance(io, EndpointIo)
        await io.send([b"x", b"y"], b.local_address)
        assert [(await b.recvfrom())[0] for _ in range(2)] == [b"x", b"y"]
        await b.sendto(b"z", a.local_address)
        assert await io.receive() == (b"z", b.local_address)
        io.close()
