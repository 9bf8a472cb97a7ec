"""One port number on several lab addresses.

Strategy: glue and MX records carry addresses but no ports, so every lab host that plays one part
(the name servers, the mail exchangers) must listen on one port number for a client to find any
of them once it knows the port.  That is the well-known port (53, 25, 80, 110) when the process
may bind it; otherwise one free high port, found by binding the first address on port 0 and the
others on the number it got, starting over when one of them finds it taken.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

__all__ = ["BIND_ATTEMPTS", "Bound", "TcpPort", "bind_same_port", "close_all", "listen_tcp"]

log = logging.getLogger(__name__)

BIND_ATTEMPTS = 20


class Bound(Protocol):
    """Sockets bound on one address: the port they got, and how to close them."""

    @property
    def port(self) -> int: ...

    async def aclose(self) -> None: ...


B = TypeVar("B", bound=Bound)


@dataclass
class TcpPort:
    """A TCP listener on one lab address."""

    listener: trio.SocketListener

    @property
    def port(self) -> int:
        return int(self.listener.socket.getsockname()[1])

    async def aclose(self) -> None:
        await self.listener.aclose()


async def listen_tcp(address: str, port: int) -> TcpPort:
    """A TCP listener on ``address:port`` (trio sets SO_REUSEADDR: restarts need not wait)."""
    (listener,) = await trio.open_tcp_listeners(port, host=address)
    return TcpPort(listener)


async def bind_same_port(
    addresses: Sequence[str],
    port: int,
    bind: Callable[[str, int], Awaitable[B]],
    *,
    fallback: bool = True,
) -> dict[str, B]:
    """``bind(address, p)`` for every address with one port ``p``: ``port`` if it can be had.

    Args:
        port: the port wanted; 0 goes straight to a free one.
        fallback: take a free port when ``port`` cannot be bound on every address (not root,
            or in use); without it that is an error.

    Raises:
        OSError: ``port`` cannot be bound and there is no fallback, or no free port was found
            on every address in :data:`BIND_ATTEMPTS` tries.
    """
    if port:
        try:
            return await _bind_on(addresses, port, bind)
        except OSError as exc:
            if not fallback:
                raise
            log.info("lab: cannot bind port %d on %s (%s); using a free high port", port, addresses[0], exc)
    first, rest = addresses[0], addresses[1:]
    for _ in range(BIND_ATTEMPTS):
        bound = await bind(first, 0)
        try:
            others = await _bind_on(rest, bound.port, bind)
        except OSError as exc:
            await bound.aclose()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return {first: bound, **others}
    raise OSError(errno.EADDRINUSE, f"no port free on every one of {', '.join(addresses)}")


async def _bind_on(
    addresses: Sequence[str], port: int, bind: Callable[[str, int], Awaitable[B]]
) -> dict[str, B]:
    done: dict[str, B] = {}
    try:
        for address in addresses:
            done[address] = await bind(address, port)
    except BaseException:
        for bound in done.values():
            await bound.aclose()
        raise
    return done


async def close_all(bound: Sequence[Bound]) -> None:
    """Close every one, even when cancelled (they are being given back)."""
    with trio.CancelScope(shield=True):
        for item in bound:
            await item.aclose()
