"""The TFTP server on an in-memory network under a mock clock: policy, safety, transfer IDs,
duplicates, limits, loss, and what a failed upload leaves behind (nothing)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from clients.tftp import ClientOptions, get_file, put_file
from netlab.aio.endpoint import MemoryNetwork
from netlab.aio.shutdown import Lifetime
from netlab.aio.tftp import TransferOutcome
from netlab.config import TftpConfig
from netlab.proto.tftp_packet import Ack, Data, Error, ErrorCode, Opcode, OptionAck, Request
from servers.tftp import TftpServer
from tests.tftp_support import (  # noqa: F401 (an autouse fixture)
    RawPeer,
    inline_file_io,
    leftovers,
    lossy_route,
    memory_endpoints,
    sha256,
)

CONFIG = TftpConfig(listen="127.0.0.1:0", allow_upload=True, max_upload_size=100_000)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)  # file I/O runs inline: see inline_file_io


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    (path / "hello.txt").write_bytes(b"hello\nworld\n")
    (path / "big.bin").write_bytes(os.urandom(50_000))
    return path


class Lab:
    """A server on a memory network, and ways to talk to it."""

    def __init__(self, net: MemoryNetwork, server: TftpServer, lifetime: Lifetime) -> None:
        self.net = net
        self.server = server
        self.lifetime = lifetime
        self.open_endpoint = memory_endpoints(net)
        assert server.address is not None
        self.address = server.address

    def peer(self) -> RawPeer:
        return RawPeer(self.net.endpoint())

    async def get(self, remote: str, local: Path, **options: Any) -> TransferOutcome:
        opts = ClientOptions(**options)
        return await get_file(self.address, remote, local, opts, open_endpoint=self.open_endpoint)

    async def put(self, local: Path, remote: str, **options: Any) -> TransferOutcome:
        opts = ClientOptions(**options)
        return await put_file(self.address, local, remote, opts, open_endpoint=self.open_endpoint)


async def start_lab(
    nursery: trio.Nursery, net: MemoryNetwork, root: Path, config: TftpConfig = CONFIG
) -> Lab:
    server = TftpServer(config, root, open_endpoint=memory_endpoints(net))
    lifetime = Lifetime()
    await nursery.start(server.serve, lifetime)
    return Lab(net, server, lifetime)


@pytest.fixture
async def net() -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork() as network:
        yield network


@pytest.fixture
async def lab(nursery: trio.Nursery, net: MemoryNetwork, root: Path) -> Lab:
    return await start_lab(nursery, net, root)


# -- transfers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"blksize": 1428}, {"windowsize": 8}, {"blksize": 8, "windowsize": 16, "timeout": 2}],
    ids=str,
)
async def test_get_and_put_round_trip(
    clock: trio.testing.MockClock, lab: Lab, root: Path, tmp_path: Path, options: dict[str, int]
) -> None:
    local = tmp_path / "copy.bin"
    outcome = await lab.get("big.bin", local, **options)
    assert outcome.ok
    assert sha256(local) == sha256(root / "big.bin")
    outcome = await lab.put(local, "uploaded.bin", **options)
    assert outcome.ok
    assert sha256(root / "uploaded.bin") == sha256(local)
    assert leftovers(root) == []


async def test_netascii_both_ways(
    clock: trio.testing.MockClock, lab: Lab, root: Path, tmp_path: Path
) -> None:
    text = b"one\ntwo\r\nbare\rcr\n"
    (tmp_path / "t.txt").write_bytes(text)
    assert (await lab.put(tmp_path / "t.txt", "t.txt", mode="netascii")).ok
    assert (root / "t.txt").read_bytes() == text
    assert (await lab.get("t.txt", tmp_path / "back.txt", mode="netascii")).ok
    assert (tmp_path / "back.txt").read_bytes() == text


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_lossy_reordering_network_delivers_the_right_bytes(
    clock: trio.testing.MockClock, nursery: trio.Nursery, root: Path, tmp_path: Path, seed: int
) -> None:
    async with MemoryNetwork(lossy_route(seed, loss=0.1, reorder=0.1)) as net:
        lab = await start_lab(nursery, net, root)
        local = tmp_path / "copy.bin"
        assert (await lab.get("big.bin", local, blksize=1024, windowsize=4)).ok
        assert sha256(local) == sha256(root / "big.bin")
        assert (await lab.put(local, "up.bin")).ok
        assert sha256(root / "up.bin") == sha256(local)
        lab.lifetime.stop()


async def test_access_log_line(
    clock: trio.testing.MockClock, lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="netlab.access.tftp"):
        await lab.get("hello.txt", tmp_path / "h", blksize=1024)
        await lab.get("missing", tmp_path / "m", tsize=False)
    ok, refused = [r.getMessage().split(" ", 1)[1] for r in caplog.records if r.name == "netlab.access.tftp"]
    peer, opcode, name, mode, options, size, _duration, outcome = ok.split(" ", 7)
    assert peer.startswith("127.0.0.1:")
    assert (opcode, name, mode, options, size, outcome) == (
        "RRQ",
        '"hello.txt"',
        "octet",
        "blksize=1024,tsize=12",
        "12",
        "ok",
    )
    assert refused.endswith("refused: error 1 (File not found): file not found")


# -- refusals ----------------------------------------------------------------------------------


async def refusal(lab: Lab, request: Request) -> Error:
    peer = lab.peer()
    await peer.send(request, lab.address)
    packet, addr = await peer.receive()
    assert isinstance(packet, Error)
    assert addr != lab.address  # answered from a fresh transfer ID
    return packet


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("missing.bin", ErrorCode.FILE_NOT_FOUND),
        ("../root/hello.txt", ErrorCode.ACCESS_VIOLATION),
        ("/etc/passwd", ErrorCode.ACCESS_VIOLATION),
        ("sub/../../x", ErrorCode.ACCESS_VIOLATION),
        ("escape/passwd", ErrorCode.ACCESS_VIOLATION),  # a symlink out of the root
        ("subdir", ErrorCode.ACCESS_VIOLATION),  # not a regular file
    ],
)
async def test_read_refusals(
    clock: trio.testing.MockClock, lab: Lab, root: Path, filename: str, code: ErrorCode
) -> None:
    (root / "escape").symlink_to("/etc")
    (root / "subdir").mkdir()
    error = await refusal(lab, Request(Opcode.RRQ, filename, "octet"))
    assert error.code == code


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"blksize": "7"}, ErrorCode.OPTION_REFUSED),
        ({"blksize": "65465"}, ErrorCode.OPTION_REFUSED),
        ({"windowsize": "0"}, ErrorCode.OPTION_REFUSED),
        ({"timeout": "256"}, ErrorCode.OPTION_REFUSED),
        ({"tsize": "abc"}, ErrorCode.OPTION_REFUSED),
    ],
)
async def test_out_of_range_options_are_refused_with_error_8(
    clock: trio.testing.MockClock, lab: Lab, options: dict[str, str], code: ErrorCode
) -> None:
    assert (await refusal(lab, Request(Opcode.RRQ, "hello.txt", "octet", options))).code == code


async def test_unknown_mode_is_illegal(clock: trio.testing.MockClock, lab: Lab) -> None:
    error = await refusal(lab, Request(Opcode.RRQ, "hello.txt", "mail"))
    assert error.code == ErrorCode.ILLEGAL_OPERATION


async def test_uploads_are_off_by_default(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, root: Path
) -> None:
    lab = await start_lab(nursery, net, root, TftpConfig(listen="127.0.0.1:0"))
    error = await refusal(lab, Request(Opcode.WRQ, "new.bin", "octet"))
    assert error.code == ErrorCode.ACCESS_VIOLATION
    assert not (root / "new.bin").exists()


async def test_no_overwrite_unless_allowed(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, root: Path, tmp_path: Path
) -> None:
    lab = await start_lab(nursery, net, root)
    error = await refusal(lab, Request(Opcode.WRQ, "hello.txt", "octet"))
    assert error.code == ErrorCode.FILE_EXISTS
    assert (root / "hello.txt").read_bytes() == b"hello\nworld\n"
    permissive = await start_lab(nursery, net, root, dataclasses.replace(CONFIG, overwrite=True))
    (tmp_path / "new").write_bytes(b"replaced")
    assert (await permissive.put(tmp_path / "new", "hello.txt")).ok
    assert (root / "hello.txt").read_bytes() == b"replaced"


async def test_upload_announced_too_big_is_refused_with_error_3(
    clock: trio.testing.MockClock, lab: Lab
) -> None:
    error = await refusal(lab, Request(Opcode.WRQ, "big", "octet", {"tsize": "100001"}))
    assert error.code == ErrorCode.DISK_FULL


async def test_upload_growing_too_big_stops_and_leaves_nothing(
    clock: trio.testing.MockClock, lab: Lab, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "huge").write_bytes(bytes(100_001))
    outcome = await lab.put(tmp_path / "huge", "huge", tsize=False)
    assert not outcome.ok
    assert outcome.error == Error(ErrorCode.DISK_FULL, "file exceeds the limit of 100000 bytes")
    assert outcome.by_peer
    assert not (root / "huge").exists()
    assert leftovers(root) == []


async def test_an_abandoned_upload_leaves_nothing(
    clock: trio.testing.MockClock, lab: Lab, root: Path
) -> None:
    peer = lab.peer()
    await peer.send(Request(Opcode.WRQ, "partial.bin", "octet"), lab.address)
    ack, tid = await peer.receive()
    assert ack == Ack(0)
    await peer.send(Data(1, bytes(512)), tid)
    assert (await peer.receive())[0] == Ack(1)
    # ...and the client vanishes.  The server retries, gives up, and keeps nothing.
    while True:
        packet, _ = await peer.receive()
        if isinstance(packet, Error):
            break
        assert packet == Ack(1)
    await trio.sleep(1)
    assert not (root / "partial.bin").exists()
    assert leftovers(root) == []
    assert lab.server.stats["failed"] == 1


# -- transfer IDs, duplicates, limits ------------------------------------------------------------


async def test_a_stranger_gets_error_5_and_the_transfer_goes_on(
    clock: trio.testing.MockClock, lab: Lab, root: Path
) -> None:
    client, stranger = lab.peer(), lab.peer()
    await client.send(Request(Opcode.RRQ, "big.bin", "octet", {"blksize": "1024"}), lab.address)
    oack, tid = await client.receive()
    assert oack == OptionAck({"blksize": "1024"})
    await client.send(Ack(0), tid)
    await stranger.send(Ack(1), tid)
    error, source = await stranger.receive()
    assert isinstance(error, Error)
    assert error.code == ErrorCode.UNKNOWN_TID
    assert source == tid
    received = bytearray()
    while True:
        data, _ = await client.receive()
        assert isinstance(data, Data)
        received += data.payload
        await client.send(Ack(data.block), tid)
        if len(data.payload) < 1024:
            break
    assert bytes(received) == (root / "big.bin").read_bytes()
    await trio.sleep(1)
    assert lab.server.stats["wrong_tid"] == 1
    assert lab.server.stats["completed"] == 1


async def test_a_duplicate_request_does_not_start_a_second_transfer(
    clock: trio.testing.MockClock, lab: Lab
) -> None:
    peer = lab.peer()
    request = Request(Opcode.RRQ, "hello.txt", "octet")
    await peer.send(request, lab.address)
    await peer.send(request, lab.address)  # the client's retransmission crossed our reply
    data, tid = await peer.receive()
    assert data == Data(1, b"hello\nworld\n")
    assert await peer.nothing_within(0.5)  # no DATA 1 from a second transfer ID
    await peer.send(Ack(1), tid)
    await trio.sleep(1)
    assert lab.server.stats["duplicate_requests"] == 1
    assert lab.server.stats["completed"] == 1


async def test_too_many_transfers_are_refused(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, root: Path
) -> None:
    lab = await start_lab(nursery, net, root, dataclasses.replace(CONFIG, max_transfers=1))
    first, second = lab.peer(), lab.peer()
    await first.send(Request(Opcode.RRQ, "big.bin", "octet"), lab.address)
    assert isinstance((await first.receive())[0], Data)
    await second.send(Request(Opcode.RRQ, "big.bin", "octet"), lab.address)
    error, _ = await second.receive()
    assert isinstance(error, Error)
    assert "busy" in error.message


async def test_garbage_at_the_request_port_is_answered_and_serving_goes_on(
    clock: trio.testing.MockClock, lab: Lab, tmp_path: Path
) -> None:
    peer = lab.peer()
    await peer.send(b"\x00\x09nonsense", lab.address)
    error, _ = await peer.receive()
    assert isinstance(error, Error)
    assert error.code == ErrorCode.ILLEGAL_OPERATION
    await peer.send(Ack(3), lab.address)
    assert isinstance((await peer.receive())[0], Error)
    await peer.send(Error(ErrorCode.NOT_DEFINED, "bye"), lab.address)
    assert await peer.nothing_within(2)  # an ERROR is never answered
    assert (await lab.get("hello.txt", tmp_path / "h")).ok


async def test_shutdown_lets_a_running_transfer_finish_and_refuses_new_ones(
    clock: trio.testing.MockClock, lab: Lab, root: Path
) -> None:
    peer = lab.peer()
    await peer.send(Request(Opcode.RRQ, "big.bin", "octet"), lab.address)
    first, tid = await peer.receive()
    assert first == Data(1, (root / "big.bin").read_bytes()[:512])
    lab.lifetime.stop()
    await trio.sleep(0.1)
    late = lab.peer()
    await late.send(Request(Opcode.RRQ, "hello.txt", "octet"), lab.address)
    assert await late.nothing_within(2)
    await peer.send(Ack(1), tid)
    assert isinstance((await peer.receive())[0], Data)  # still served


async def test_a_host_out_of_sockets_fails_one_transfer_not_the_server(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, root: Path, tmp_path: Path
) -> None:
    working = memory_endpoints(net)
    broken = {"on": True}

    async def flaky(host: str, port: int = 0, *, rcvbuf: int | None = None, sndbuf: int | None = None) -> Any:
        if port == 0 and rcvbuf is not None and broken["on"]:
            raise OSError(24, "Too many open files")
        return await working(host, port, rcvbuf=rcvbuf, sndbuf=sndbuf)

    server = TftpServer(CONFIG, root, open_endpoint=flaky)
    await nursery.start(server.serve, Lifetime())
    assert server.address is not None
    lab = Lab(net, server, Lifetime())
    peer = lab.peer()
    await peer.send(Request(Opcode.RRQ, "hello.txt", "octet"), lab.address)
    assert await peer.nothing_within(2)
    assert server.stats["failed"] == 1
    broken["on"] = False
    assert (await lab.get("hello.txt", tmp_path / "h")).ok


async def test_transfer_sockets_are_sized_for_the_window(
    clock: trio.testing.MockClock, nursery: trio.Nursery, net: MemoryNetwork, root: Path, tmp_path: Path
) -> None:
    working = memory_endpoints(net)
    sizes: list[tuple[int | None, int | None]] = []

    async def recording(
        host: str, port: int = 0, *, rcvbuf: int | None = None, sndbuf: int | None = None
    ) -> Any:
        sizes.append((rcvbuf, sndbuf))
        return await working(host, port, rcvbuf=rcvbuf, sndbuf=sndbuf)

    server = TftpServer(CONFIG, root, open_endpoint=recording)
    await nursery.start(server.serve, Lifetime())
    lab = Lab(net, server, Lifetime())
    assert (await lab.get("big.bin", tmp_path / "b", blksize=8192, windowsize=32)).ok
    rcvbuf, sndbuf = sizes[-1]
    assert rcvbuf is not None
    assert sndbuf is not None
    assert min(rcvbuf, sndbuf) >= 32 * 8192  # a whole window fits, with room for overhead


async def test_an_upload_dallies_long_enough_for_a_slow_client(
    clock: trio.testing.MockClock, lab: Lab, root: Path
) -> None:
    peer = lab.peer()
    await peer.send(Request(Opcode.WRQ, "slow.bin", "octet"), lab.address)
    _, tid = await peer.receive()
    await peer.send(Data(1, b"tiny"), tid)
    assert (await peer.receive())[0] == Ack(1)
    assert (root / "slow.bin").read_bytes() == b"tiny"  # stored before the final ACK
    await trio.sleep(4.5)  # our final ACK "was lost"; a client with a 5 s timer resends
    await peer.send(Data(1, b"tiny"), tid)
    assert (await peer.receive())[0] == Ack(1)
    await trio.sleep(1)
    await peer.send(Data(1, b"tiny"), tid)
    assert await peer.nothing_within(5)  # the dally is over and the transfer ID is gone
