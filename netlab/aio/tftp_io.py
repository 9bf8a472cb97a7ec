"""Datagram I/O for one TFTP transfer, with a fast path for real UDP sockets.

Strategy: a transfer's loop needs two operations, "send these datagrams" and "wait for one
datagram until this deadline".  :class:`EndpointIo` does them with any
:class:`~netlab.aio.endpoint.DatagramEndpoint` (the in-memory network of the tests).
:class:`SocketIo` does them on the non-blocking socket under a :class:`UdpEndpoint`, calling
the socket directly and entering trio's scheduler only when the socket has nothing for it
(``wait_readable``/``wait_writable``).  Each trio socket operation passes through the scheduler
twice even when the kernel could answer at once; for lockstep TFTP, one scheduler pass per
block is what separates 16k from 45k blocks a second on loopback.

A window of DATA packets, all of one size, goes out as one ``sendmsg`` with Linux's UDP
segmentation offload (``UDP_SEGMENT``, Linux 4.18): the kernel cuts the buffer into datagrams of
the given size, so sixteen packets cost one system call instead of sixteen.  The peer receives
ordinary datagrams.  Where the kernel or the route refuses it, the socket falls back to one
``sendto`` per datagram for good.

Fairness is kept by hand: when datagrams keep arriving without the socket ever running dry,
:class:`SocketIo` still yields to the scheduler every ``CHECKPOINT_EVERY`` datagrams, so other
transfers run and cancellation is delivered.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Sequence
from typing import Protocol

import trio

from netlab.aio.endpoint import MAX_DATAGRAM, Addr, DatagramEndpoint, UdpEndpoint

__all__ = ["CHECKPOINT_EVERY", "EndpointIo", "SocketIo", "TransferIo", "transfer_io"]

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 32  # datagrams received without blocking before yielding anyway
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # <linux/udp.h>; Python names it from 3.12
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in the kernel
GSO_MAX_BYTES = 65000  # a segmented send is still one UDP datagram on the way down
_GSO_REFUSED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}


class TransferIo(Protocol):
    async def send(self, datagrams: Sequence[bytes], addr: Addr) -> None: ...

    async def receive(self) -> tuple[bytes, Addr]:
        """The next datagram (the caller's cancel scope bounds the wait)."""
        ...

    def close(self) -> None: ...


class EndpointIo:
    """Any endpoint, through its async methods."""

    def __init__(self, ep: DatagramEndpoint) -> None:
        self._ep = ep

    async def send(self, datagrams: Sequence[bytes], addr: Addr) -> None:
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
        self._gso = hasattr(socket, "SOL_UDP")

    @property
    def segmentation(self) -> bool:
        """True while sends of equal-sized datagrams go out through ``UDP_SEGMENT``."""
        return self._gso

    async def send(self, datagrams: Sequence[bytes], addr: Addr) -> None:
        i, count = 0, len(datagrams)
        if count == 1:  # lockstep: the common case, kept short
            await self._send_one(datagrams[0], addr)
            return
        while i < count:
            size = len(datagrams[i])
            j = i + 1
            if self._gso and size:
                # A run of equal sizes, which may end with one shorter datagram (the kernel
                # allows a short last segment): a window of DATA packets, final block included.
                limit = min(count, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // size)
                while j < limit and len(datagrams[j]) == size:
                    j += 1
                if j < limit and len(datagrams[j]) < size:
                    j += 1
            if j - i > 1 and await self._send_segmented(datagrams[i:j], size, addr):
                i = j
                continue
            for datagram in datagrams[i:j]:
                await self._send_one(datagram, addr)
            i = j

    async def _send_segmented(self, datagrams: Sequence[bytes], size: int, addr: Addr) -> bool:
        """One sendmsg for many datagrams; False if the kernel will not segment (then never again)."""
        buffer = b"".join(datagrams)
        control = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        while True:
            try:
                self._sock.sendmsg([buffer], control, 0, addr)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
                continue
            except ConnectionRefusedError:
                pass
            except OSError as exc:
                if exc.errno not in _GSO_REFUSED:
                    raise
                log.debug("UDP segmentation refused (%s); sending datagrams one by one", exc)
                self._gso = False
                return False
            return True

    async def _send_one(self, datagram: bytes, addr: Addr) -> None:
        while True:
            try:
                self._sock.sendto(datagram, addr)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
                continue
            except ConnectionRefusedError:
                pass  # an ICMP error for an earlier datagram; UDP promises nothing
            return

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
