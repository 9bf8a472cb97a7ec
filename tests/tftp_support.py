"""Helpers shared by the TFTP driver, server and client tests."""

from __future__ import annotations

import contextlib
import hashlib
import random
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from netlab.aio.endpoint import Addr, DatagramEndpoint, MemoryNetwork, Route
from netlab.aio.tftp import EndpointFactory
from netlab.proto.tftp_packet import Packet, decode_packet_untrusted, encode
from tests.processes import netlab_command, read_line, running

T = TypeVar("T")


@pytest.fixture(autouse=True)
def inline_file_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import into a test module that runs a mock clock: worker-thread calls run inline.

    The clock jumps whenever every task waits, and a task waiting for a worker thread counts as
    waiting, so on a busy machine virtual time would race real file I/O (a slow fsync outlasting a
    sender's whole retry budget).  Inline, the tests are deterministic; the threads themselves are
    exercised by the real-socket and interop tests.
    """

    async def run_inline(fn: Callable[..., T], *args: Any, **_: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)
    monkeypatch.setattr("netlab.store.atomic.os.fsync", lambda fd: None)  # speed only


RECEIVE_LIMIT = 30.0  # virtual seconds a test waits for a datagram


def memory_endpoints(net: MemoryNetwork) -> EndpointFactory:
    """An endpoint factory on ``net``; wildcard binds land on 127.0.0.1."""

    async def open_endpoint(
        host: str, port: int = 0, *, rcvbuf: int | None = None, sndbuf: int | None = None
    ) -> DatagramEndpoint:
        await trio.lowlevel.checkpoint()
        return net.endpoint("127.0.0.1" if host in ("0.0.0.0", "::", "") else host, port)

    return open_endpoint


def lossy_route(seed: int, *, loss: float = 0.1, reorder: float = 0.1) -> Route:
    """A MemoryNetwork route: ``loss`` of datagrams vanish, ``reorder`` arrive up to 50 ms late."""
    rng = random.Random(seed)

    def route(data: bytes, src: Addr, dst: Addr, now: float) -> Iterable[tuple[float, bytes]]:
        if rng.random() < loss:
            return []
        delay = rng.uniform(0.001, 0.05) if rng.random() < reorder else 0.0
        return [(delay, data)]

    return route


class RawPeer:
    """A hand-driven TFTP peer on a memory endpoint, for the cases no well-behaved client makes."""

    def __init__(self, ep: DatagramEndpoint) -> None:
        self.ep = ep

    async def send(self, packet: Packet | bytes, addr: Addr) -> None:
        await self.ep.sendto(packet if isinstance(packet, bytes) else encode(packet), addr)

    async def receive(self) -> tuple[Packet, Addr]:
        with trio.fail_after(RECEIVE_LIMIT):
            data, addr = await self.ep.recvfrom()
        return decode_packet_untrusted(data), addr

    async def nothing_within(self, seconds: float) -> bool:
        with trio.move_on_after(seconds):
            await self.ep.recvfrom()
            return False
        return True


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Temporary files an upload may have left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@contextlib.contextmanager
def netlab_tftpd(root: Path, *flags: str) -> Iterator[str]:
    """``netlab tftpd`` on a free loopback port; yields HOST:PORT, then stops it by its PID.

    Raises:
        AssertionError: it did not start, or did not exit cleanly on SIGINT.
    """
    command = netlab_command("tftpd", "--listen", "127.0.0.1:0", "--root", str(root), *flags)
    with running(command, sig=signal.SIGINT, timeout=15) as proc:
        line = read_line(proc)  # "tftpd: udp 127.0.0.1:PORT  root DIR"
        assert line.startswith("tftpd: udp 127.0.0.1:"), line
        yield line.split()[2]
    assert proc.returncode == 0
