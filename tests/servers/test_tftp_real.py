"""The TFTP server and client on real UDP sockets on 127.0.0.1, in process and as commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from clients.tftp import ClientOptions, get_file, put_file
from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.shutdown import Lifetime
from netlab.config import TftpConfig
from netlab.proto.tftp_packet import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    Request,
    decode_packet_untrusted,
    encode,
)
from servers.tftp import TftpServer
from tests import processes
from tests.tftp_support import leftovers, netlab_tftpd, sha256

LIMIT = 30  # seconds for any one test here


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    (path / "data.bin").write_bytes(os.urandom(300_000))
    return path


async def start_server(nursery: trio.Nursery, root: Path) -> TftpServer:
    server = TftpServer(TftpConfig(listen="127.0.0.1:0", allow_upload=True), root)
    await nursery.start(server.serve, Lifetime())
    return server


@pytest.mark.parametrize("options", [ClientOptions(), ClientOptions(blksize=1428, windowsize=16)], ids=str)
async def test_get_and_put_over_loopback(
    nursery: trio.Nursery, root: Path, tmp_path: Path, options: ClientOptions
) -> None:
    server = await start_server(nursery, root)
    assert server.address is not None
    with trio.fail_after(LIMIT):
        got = await get_file(server.address, "data.bin", tmp_path / "copy", options)
        assert got.ok
        assert sha256(tmp_path / "copy") == sha256(root / "data.bin")
        put = await put_file(server.address, tmp_path / "copy", "back.bin", options)
        assert put.ok
        assert sha256(root / "back.bin") == sha256(root / "data.bin")
    assert leftovers(root) == []
    nursery.cancel_scope.cancel()


async def test_a_stranger_on_loopback_gets_error_5(nursery: trio.Nursery, root: Path) -> None:
    server = await start_server(nursery, root)
    assert server.address is not None
    client, stranger = await open_udp_endpoint(), await open_udp_endpoint()
    with trio.fail_after(LIMIT):
        await client.sendto(encode(Request(Opcode.RRQ, "data.bin", "octet")), server.address)
        data, tid = await client.recvfrom()
        assert decode_packet_untrusted(data) == Data(1, (root / "data.bin").read_bytes()[:512])
        await stranger.sendto(encode(Ack(1)), tid)
        error, source = await stranger.recvfrom()
        assert decode_packet_untrusted(error) == Error(ErrorCode.UNKNOWN_TID, "unknown transfer ID")
        assert source == tid
        await client.sendto(encode(Ack(1)), tid)
        data, _ = await client.recvfrom()
        assert decode_packet_untrusted(data) == Data(2, (root / "data.bin").read_bytes()[512:1024])
    await client.aclose()
    await stranger.aclose()
    nursery.cancel_scope.cancel()


# -- the commands ------------------------------------------------------------------------------


def netlab(*args: str) -> subprocess.CompletedProcess[str]:
    return processes.netlab(*args, timeout=LIMIT)


@pytest.fixture
def tftpd(root: Path) -> Iterator[str]:
    with netlab_tftpd(root, "--allow-upload") as address:
        yield address


@pytest.mark.timeout(60)
def test_commands_get_put_and_errors(tftpd: str, root: Path, tmp_path: Path) -> None:
    got = netlab("tftp", "get", "--blksize", "1428", tftpd, "data.bin", str(tmp_path / "copy"))
    assert got.returncode == 0, got.stderr
    assert "300000 bytes" in got.stdout
    assert sha256(tmp_path / "copy") == sha256(root / "data.bin")
    put = netlab("tftp", "put", "--windowsize", "4", tftpd, "sent.bin", str(tmp_path / "copy"))
    assert put.returncode == 0, put.stderr
    assert sha256(root / "sent.bin") == sha256(root / "data.bin")
    missing = netlab("tftp", "get", tftpd, "missing.bin", str(tmp_path / "m"))
    assert missing.returncode == 1
    assert f"server {tftpd} refused: error 1 (File not found)" in missing.stderr
    again = netlab("tftp", "put", tftpd, "sent.bin", str(tmp_path / "copy"))
    assert again.returncode == 1
    assert "error 6 (File already exists)" in again.stderr
    assert not (tmp_path / "m").exists()


def test_help_works_for_both_commands() -> None:
    for args in (["tftpd", "--help"], ["tftp", "get", "--help"], ["tftp", "put", "--help"]):
        result = netlab(*args)
        assert result.returncode == 0
        assert "Usage:" in result.stdout


def test_bad_flags_are_usage_errors() -> None:
    assert netlab("tftp", "get", "--blksize", "7", "127.0.0.1", "f").returncode == 2
    assert netlab("tftp", "get", "127.0.0.1:99999", "f").returncode == 2
    assert netlab("tftpd", "--listen", "nonsense:port").returncode == 2
