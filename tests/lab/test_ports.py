"""One port on several lab addresses (netlab.lab.ports): the algorithm with fakes, then real sockets."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest
import trio

from netlab.lab.ports import BIND_ATTEMPTS, TcpPort, bind_same_port, close_all, listen_tcp

ADDRESSES = ["127.0.0.201", "127.0.0.202", "127.0.0.203"]


class FakeBound:
    def __init__(self, address: str, port: int) -> None:
        self.address, self._port, self.closed = address, port, False

    @property
    def port(self) -> int:
        return self._port

    async def aclose(self) -> None:
        self.closed = True


class FakeHost:
    """Hands out ports from 4000 up for port 0; refuses the (address, port) pairs in ``taken``."""

    def __init__(self, taken: set[tuple[str, int]] | None = None, refuse: int = errno.EADDRINUSE) -> None:
        self.taken = taken or set()
        self.refuse = refuse
        self.next_free = 4000
        self.made: list[FakeBound] = []

    async def bind(self, address: str, port: int) -> FakeBound:
        await trio.lowlevel.checkpoint()
        if port == 0:
            port, self.next_free = self.next_free, self.next_free + 1
        if (address, port) in self.taken:
            raise OSError(self.refuse, "taken")
        bound = FakeBound(address, port)
        self.made.append(bound)
        return bound

    def open(self) -> list[FakeBound]:
        return [b for b in self.made if not b.closed]


async def test_the_wanted_port_when_every_address_has_it() -> None:
    host = FakeHost()
    bound = await bind_same_port(ADDRESSES, 25, host.bind)
    assert {b.port for b in bound.values()} == {25}
    assert list(bound) == ADDRESSES


async def test_falls_back_to_one_free_port_and_closes_what_it_gave_up() -> None:
    host = FakeHost(taken={(ADDRESSES[2], 25)})
    bound = await bind_same_port(ADDRESSES, 25, host.bind)
    assert {b.port for b in bound.values()} == {4000}
    assert sorted(b.address for b in host.open()) == ADDRESSES  # the two bound on 25 were closed


async def test_without_fallback_the_error_stands_and_nothing_stays_bound() -> None:
    host = FakeHost(taken={(ADDRESSES[1], 25)}, refuse=errno.EACCES)
    with pytest.raises(OSError, match="taken"):
        await bind_same_port(ADDRESSES, 25, host.bind, fallback=False)
    assert host.open() == []


async def test_a_free_port_taken_on_another_address_is_tried_again() -> None:
    host = FakeHost(taken={(ADDRESSES[1], 4000), (ADDRESSES[2], 4001)})
    bound = await bind_same_port(ADDRESSES, 0, host.bind)
    assert {b.port for b in bound.values()} == {4002}
    assert len(host.open()) == 3


async def test_gives_up_after_so_many_tries_and_other_errors_are_not_retried() -> None:
    everything = {(ADDRESSES[1], 4000 + i) for i in range(BIND_ATTEMPTS)}
    host = FakeHost(taken=everything)
    with pytest.raises(OSError, match="no port free"):
        await bind_same_port(ADDRESSES, 0, host.bind)
    assert host.open() == []
    denied = FakeHost(taken={(ADDRESSES[1], 4000)}, refuse=errno.EACCES)
    with pytest.raises(OSError, match="taken"):
        await bind_same_port(ADDRESSES, 0, denied.bind)
    assert len(denied.made) == 1 and denied.open() == []


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port held on the last address only (the others are free on it, most likely)."""
    with socket.socket() as sock:
        sock.bind((ADDRESSES[-1], 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_real_listeners_share_a_port_and_accept(occupied: int) -> None:
    bound: dict[str, TcpPort] = await bind_same_port(ADDRESSES, occupied, listen_tcp)
    try:
        ports = {b.port for b in bound.values()}
        assert len(ports) == 1 and ports != {occupied}
        for address, item in bound.items():
            stream = await trio.open_tcp_stream(address, item.port)
            accepted = await item.listener.accept()
            await stream.aclose()
            await accepted.aclose()
    finally:
        await close_all(list(bound.values()))
