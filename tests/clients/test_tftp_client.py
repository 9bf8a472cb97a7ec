"""The TFTP client against hand-driven servers: fallbacks, strangers, failures, timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from clients.tftp import ClientOptions, TftpClientError, get_file, put_file
from netlab.aio.endpoint import MemoryNetwork
from netlab.proto.tftp_packet import Ack, Data, Error, ErrorCode, Opcode, OptionAck, Request
from tests.tftp_support import RawPeer, inline_file_io, leftovers, memory_endpoints  # noqa: F401

SERVER = ("127.0.0.1", 69)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)  # file I/O runs inline: see inline_file_io


@pytest.fixture
async def net() -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork() as network:
        yield network


async def fake_server_ignoring_options(net: MemoryNetwork, content: bytes, stranger: bool) -> None:
    """Answers one RRQ the RFC 1350 way (no OACK), optionally with a stranger butting in."""
    listener = RawPeer(net.endpoint(*SERVER))
    request, client = await listener.receive()
    assert isinstance(request, Request)
    assert request.options  # the client asked for options; we ignore them
    transfer = RawPeer(net.endpoint())
    blocks = [content[i : i + 512] for i in range(0, len(content) + 1, 512)]
    for number, block in enumerate(blocks, start=1):
        await transfer.send(Data(number, block), client)
        if stranger and number == 1:
            intruder = RawPeer(net.endpoint())
            await intruder.send(Data(2, b"forged"), client)
            error, _ = await intruder.receive()
            assert error == Error(ErrorCode.UNKNOWN_TID, "unknown transfer ID")
        assert (await transfer.receive())[0] == Ack(number)


@pytest.mark.parametrize("stranger", [False, True])
async def test_get_carries_on_when_the_server_ignores_options(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, tmp_path: Path, stranger: bool
) -> None:
    content = bytes(range(256)) * 5  # 1280 bytes: blocks of 512, 512, 256
    nursery.start_soon(fake_server_ignoring_options, net, content, stranger)
    await trio.lowlevel.checkpoint()
    options = ClientOptions(blksize=1428, windowsize=8)
    outcome = await get_file(SERVER, "f", tmp_path / "f", options, open_endpoint=memory_endpoints(net))
    assert outcome.ok
    assert outcome.strangers == (1 if stranger else 0)
    assert (tmp_path / "f").read_bytes() == content


async def test_a_failed_get_keeps_the_old_local_file(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, tmp_path: Path
) -> None:
    async def refuse() -> None:
        listener = RawPeer(net.endpoint(*SERVER))
        _, client = await listener.receive()
        await RawPeer(net.endpoint()).send(Error(ErrorCode.FILE_NOT_FOUND, "no such file"), client)

    nursery.start_soon(refuse)
    await trio.lowlevel.checkpoint()
    local = tmp_path / "keep.txt"
    local.write_text("precious")
    outcome = await get_file(SERVER, "gone", local, open_endpoint=memory_endpoints(net))
    assert not outcome.ok
    assert outcome.by_peer
    assert outcome.error == Error(ErrorCode.FILE_NOT_FOUND, "no such file")
    assert local.read_text() == "precious"
    assert leftovers(tmp_path) == []


async def test_the_client_refuses_an_oack_it_did_not_ask_for(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, tmp_path: Path
) -> None:
    replies: list[object] = []

    async def pushy() -> None:
        listener = RawPeer(net.endpoint(*SERVER))
        _, client = await listener.receive()
        transfer = RawPeer(net.endpoint())
        await transfer.send(OptionAck({"windowsize": "64"}), client)
        replies.append((await transfer.receive())[0])

    nursery.start_soon(pushy)
    await trio.lowlevel.checkpoint()
    outcome = await get_file(
        SERVER, "f", tmp_path / "f", ClientOptions(tsize=False), open_endpoint=memory_endpoints(net)
    )
    assert outcome.error is not None
    assert outcome.error.code == ErrorCode.OPTION_REFUSED
    assert not outcome.by_peer
    assert replies == [outcome.error]


async def test_no_server_times_out_after_backing_off(
    clock: trio.testing.MockClock, net: MemoryNetwork, tmp_path: Path
) -> None:
    silent = RawPeer(net.endpoint(*SERVER))
    started = trio.current_time()
    outcome = await get_file(SERVER, "f", tmp_path / "f", open_endpoint=memory_endpoints(net))
    assert not outcome.ok
    assert outcome.error == Error(ErrorCode.NOT_DEFINED, "timed out after 6 retransmissions")
    # RRQ at 0, then after 1, 2, 4, 4, 4, 4 seconds (doubling, capped at 4x); gives up 4 s later.
    assert trio.current_time() - started == pytest.approx(23.0)
    received = []
    while True:
        with trio.move_on_after(0.01):
            received.append((await silent.receive())[0])
            continue
        break
    assert received == [Request(Opcode.RRQ, "f", "octet", {"tsize": "0"})] * 7 + [outcome.error]
    assert not (tmp_path / "f").exists()


async def test_local_file_problems_are_reported(
    clock: trio.testing.MockClock, net: MemoryNetwork, tmp_path: Path
) -> None:
    with pytest.raises(TftpClientError, match="cannot read"):
        await put_file(SERVER, tmp_path / "missing", "x", open_endpoint=memory_endpoints(net))
    with pytest.raises(TftpClientError, match="cannot write"):
        await get_file(SERVER, "x", tmp_path / "no" / "dir", open_endpoint=memory_endpoints(net))


async def test_put_sends_tsize_and_the_file(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, tmp_path: Path
) -> None:
    received = bytearray()
    seen: list[Request] = []

    async def accept() -> None:
        listener = RawPeer(net.endpoint(*SERVER))
        request, client = await listener.receive()
        assert isinstance(request, Request)
        seen.append(request)
        transfer = RawPeer(net.endpoint())
        await transfer.send(OptionAck({"tsize": request.options["tsize"]}), client)
        while True:
            data, _ = await transfer.receive()
            assert isinstance(data, Data)
            received.extend(data.payload)
            await transfer.send(Ack(data.block), client)
            if len(data.payload) < 512:
                return

    nursery.start_soon(accept)
    await trio.lowlevel.checkpoint()
    (tmp_path / "up").write_bytes(b"z" * 1000)
    outcome = await put_file(SERVER, tmp_path / "up", "up", open_endpoint=memory_endpoints(net))
    assert outcome.ok
    assert seen == [Request(Opcode.WRQ, "up", "octet", {"tsize": "1000"})]
    assert bytes(received) == b"z" * 1000
