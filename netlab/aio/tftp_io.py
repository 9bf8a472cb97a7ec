"""Datagram I/O for one TFTP transfer, with a fast path for real UDP sockets.

Strategy: a transfer's loop needs two operations, "send these datagrams" and "wait for one
datagram until this deadline".  :class:`EndpointIo` does them with any
:class:`~netlab.aio.endpoint.DatagramEndpoint` (the in-memory network of the tests).
:class:`SocketIo` does them on the non-blocking socket under a :class:`UdpEndpoint`, calling
the socket directly and entering trio's scheduler only when the socket has nothing for it
(``wait_readable``/``wait_writable``).  Each trio socket operation passes through the scheduler
twice even when the kernel could answer at once; for lockstep TFTP, one scheduler pass per
block is what separates 16k from 45k blocks a second on loopback.

Fairness is kept by hand: when datagrams keep arriving without the socket ever running dry,
:class:`SocketIo` still yields to the scheduler every ``CHECKPOINT_EVERY`` datagrams, so other
transfers run and cancellation is delivered.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable
from typing import Protocol

import trio

from netlab.aio.endpoint import MAX_DATAGRAM, Addr, DatagramEndpoint, UdpEndpoint

__all__ = ["CHECKPOINT_EVERY", "EndpointIo", "SocketIo", "TransferIo", "transfer_io"]

CHECKPOINT_EVERY = 32  # datagrams received without blocking before yielding anyway


class TransferIo(Protocol):
    async def send(self, datagrams: Iterable[bytes], addr: Addr) -> None: ...

    async def receive(self) -> tuple[bytes, Addr]:
        """The next datagram (the caller's cancel scope bounds the wait)."""
        ...

    def close(self) -> None: ...


class EndpointIo:
    """Any endpoint, through its async methods."""

    def __init__(self, ep: DatagramEndpoint) -> None:
        self._ep = ep

    async def send(self, datagrams: Iterable[bytes], addr: Addr) -> None:
        for datagram in datagrams:
            await self._ep.sendto(datagram, addr)

    async def receive(self) -> tuple[bytes, Addr]:
        return await self._ep.recvfrom()

    def close(self) -> None:
        pass


class SocketIo:
    """A real UDP endpoint's socket, called directly while it does not block."""

    def __init__(self, ep: UdpEndpoint) -> None:
        # A second handle on the same socket (same open file, already non-blocking): the
        # stdlib object answers at once where trio's would checkpoint first.
        self._sock = socket.socket(fileno=os.dup(ep.socket.fileno()))
        self._sock.setblocking(False)
        self._unyielded = 0

    async def send(self, datagrams: Iterable[bytes], addr: Addr) -> None:
        sock = self._sock
        for datagram in datagrams:
            while True:
                try:
                    sock.sendto(datagram, addr)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    continue
                except ConnectionRefusedError:
                    pass  # an ICMP error for an earlier datagram; UDP promises nothing
                break

    async def receive(self) -> tuple[bytes, Addr]:
        sock = self._sock
        if self._unyielded >= CHECKPOINT_EVERY:
            # Yield before taking a datagram, so a cancellation delivered here loses none.
            self._unyielded = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                self._unyielded = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            except ConnectionRefusedError:
                continue  # Linux reports an ICMP error for an earlier send on the next receive
            self._unyielded += 1
            return data, (addr[0], addr[1])

    def close(self) -> None:
        trio.lowlevel.notify_closing(self._sock)
        with contextlib.suppress(OSError):
            self._sock.close()


def transfer_io(ep: DatagramEndpoint) -> TransferIo:
    """The fastest I/O ``ep`` allows."""
    return SocketIo(ep) if isinstance(ep, UdpEndpoint) else EndpointIo(ep)
