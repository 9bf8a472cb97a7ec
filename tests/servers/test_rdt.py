"""The rdt receiver: files stored whole or not at all, safe names, never overwriting; the service."""

from __future__ import annotations

import hashlib
import re
from functools import partial
from pathlib import Path

import pytest
import trio

from netlab.aio.endpoint import MemoryNetwork
from netlab.aio.rdt import RdtListener, open_rdt_stream
from netlab.aio.rdt_stream import RdtStream
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.config import NetlabConfig, override
from netlab.proto.rdt_file import Reply, encode_request, parse_reply
from netlab.transport.engine import TransportParams
from servers.rdt import Transfer, receive_transfer, service

SERVER = ("127.0.0.1", 9001)
PARAMS = TransportParams(mss=4000, window=16, seq_bits=8)


async def _read_reply(stream: RdtStream) -> Reply:
    line = bytearray()
    while chunk := await stream.receive_some():
        line += chunk
    return parse_reply(bytes(line))


async def _send_raw(net: MemoryNetwork, wire: bytes, *, eof: bool = True) -> Reply:
    stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint())
    await stream.send_all(wire)
    if eof:
        await stream.send_eof()
    reply = await _read_reply(stream)
    await stream.aclose()
    return reply


async def _receiver(
    net: MemoryNetwork,
    nursery: trio.Nursery,
    directory: Path,
    results: list[Transfer],
    out_name: str | None = None,
) -> None:
    async def handler(stream: RdtStream) -> None:
        transfer = await receive_transfer(
            stream, directory, max_size=100_000, idle_timeout=30.0, out_name=out_name
        )
        results.append(transfer)

    listener = RdtListener(net.endpoint(*SERVER), TransportParams(mss=65000))
    await nursery.start(listener.serve, handler)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.timeout(30)
async def test_names_are_sanitised_and_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_bytes(b"already here")
    results: list[Transfer] = []
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await _receiver(net, nursery, tmp_path, results)
        first = await _send_raw(net, encode_request(5, "../../report.txt") + b"hello")
        second = await _send_raw(net, encode_request(3, "/etc/report.txt") + b"bye")
        nursery.cancel_scope.cancel()
    assert (first.ok, first.name, first.sha256) == (
        True,
        "report-1.txt",
        hashlib.sha256(b"hello").hexdigest(),
    )
    assert (second.ok, second.name) == (True, "report-2.txt")
    assert _files(tmp_path) == ["report-1.txt", "report-2.txt", "report.txt"]
    assert (tmp_path / "report.txt").read_bytes() == b"already here"
    assert (tmp_path / "report-2.txt").read_bytes() == b"bye"
    assert not list(tmp_path.parent.glob("report*"))  # nothing escaped the directory
    assert [r.ok for r in results] == [True, True]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (encode_request(1000, "short.bin") + b"x" * 500, "EOF with 500 of 1000 bytes missing"),
        (encode_request(10, "long.bin") + b"x" * 11, "more than the announced 10 bytes"),
        (encode_request(200_000, "huge.bin") + b"x" * 100, "over the limit of 100000"),
        (b"GET / HTTP/1.0\r\n\r\n", "malformed header line"),
    ],
)
async def test_bad_transfers_leave_nothing_and_get_an_err(tmp_path: Path, wire: bytes, reason: str) -> None:
    results: list[Transfer] = []
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await _receiver(net, nursery, tmp_path, results)
        reply = await _send_raw(net, wire)
        nursery.cancel_scope.cancel()
    assert not reply.ok
    assert reason in reply.reason
    assert _files(tmp_path) == []  # no file, and no temporary file either
    assert results[0].ok is False


@pytest.mark.timeout(30)
async def test_a_sender_that_vanishes_leaves_nothing(tmp_path: Path) -> None:
    results: list[Transfer] = []
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await _receiver(net, nursery, tmp_path, results)
        stream = await open_rdt_stream(*SERVER, PARAMS, endpoint=net.endpoint())
        await stream.send_all(encode_request(50_000, "partial.bin") + b"x" * 20_000)
        while not _files(tmp_path):  # the temporary file exists while bytes arrive
            await trio.sleep(0.001)
        stream.abort()
        while not results:
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert results[0].ok is False
    assert "connection reset by peer" in results[0].reason
    assert _files(tmp_path) == []


@pytest.mark.timeout(30)
async def test_out_name_is_used_as_given_and_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken.bin").write_bytes(b"mine")
    results: list[Transfer] = []
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        await _receiver(net, nursery, tmp_path, results, out_name="taken.bin")
        reply = await _send_raw(net, encode_request(4, "whatever") + b"evil")
        nursery.cancel_scope.cancel()
    assert not reply.ok
    assert "exists" in reply.reason
    assert (tmp_path / "taken.bin").read_bytes() == b"mine"
    assert _files(tmp_path) == ["taken.bin"]


@pytest.mark.timeout(60)
async def test_the_service_writes_into_the_configured_directory(tmp_path: Path) -> None:
    out = tmp_path / "incoming"
    config = override(NetlabConfig(), "general", {"data_dir": str(tmp_path / "data")})
    config = override(config, "rdt", {"listen": "127.0.0.1:0", "out_dir": str(out)})
    svc = service(config)
    assert svc is not None
    assert service(override(config, "rdt", {"enabled": False})) is None
    started: list[str] = []

    def on_started(_service: Service, lines: list[str]) -> None:
        started.extend(lines)

    data = bytes(range(256)) * 1000
    async with trio.open_nursery() as nursery:
        lifetime = await nursery.start(
            partial(run_services, [svc], grace_period=5.0, on_started=on_started, lifetime=Lifetime())
        )
        match = re.search(r"on 127\.0\.0\.1:(\d+)", started[0])
        assert match is not None
        assert str(out) in started[0]
        with trio.fail_after(30):
            stream = await open_rdt_stream("127.0.0.1", int(match[1]), TransportParams(mss=30000))
            await stream.send_all(encode_request(len(data), "bytes.bin") + data)
            await stream.send_eof()
            reply = await _read_reply(stream)
            await stream.aclose()
        lifetime.stop()
    assert reply.ok
    assert reply.name == "bytes.bin"
    assert (out / "bytes.bin").read_bytes() == data
