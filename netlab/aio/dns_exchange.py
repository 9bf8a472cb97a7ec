"""Asking a DNS server: one query over UDP or TCP, and driving a trace.

Strategy: the thinnest drivers over the machines.  :func:`exchange_udp` sends from a fresh
socket (a fresh source port) and accepts only a datagram from the server asked that carries the
query's ID, resending after each timeout; :func:`exchange_tcp` opens a connection, frames the
query (:mod:`netlab.proto.dns_tcp`) and reads one framed reply.
"""

from __future__ import annotations

import trio

from netlab.aio.endpoint import Addr, UdpEndpoint, open_udp_endpoint
from netlab.proto.dns_tcp import DnsStream, EndOfStream, NeedData
from netlab.proto.dns_wire import RemoteProtocolError

__all__ = ["ExchangeError", "exchange_tcp", "exchange_udp"]

MAX_RECV = 65536  # octets


class ExchangeError(Exception):
    """No reply: the server did not answer in time, refused the connection, or closed it."""


async def _client_endpoint(server: Addr) -> UdpEndpoint:
    return await open_udp_endpoint("::" if ":" in server[0] else "0.0.0.0", 0)


async def exchange_udp(data: bytes, server: Addr, *, retry_after: float = 5.0, tries: int = 3) -> bytes:
    """Send the query ``data`` to ``server`` and return its reply.

    Raises:
        ExchangeError: no matching reply after ``tries`` sends, ``retry_after`` seconds apart.
    """
    endpoint = await _client_endpoint(server)
    try:
        for _ in range(tries):
            await endpoint.sendto(data, server)
            with trio.move_on_after(retry_after):
                while True:
                    reply, peer = await endpoint.recvfrom()
                    if peer == server and reply[:2] == data[:2]:
                        return reply
    finally:
        await endpoint.aclose()
    raise ExchangeError(f"no reply from {server[0]}#{server[1]} after {tries} tries")


async def exchange_tcp(data: bytes, server: Addr) -> bytes:
    """Send the query ``data`` to ``server`` over TCP and return its reply (wrap it in a timeout).

    Raises:
        ExchangeError: the connection failed, or was closed before the reply.
    """
    framer = DnsStream()
    try:
        stream = await trio.open_tcp_stream(*server)
        async with stream:
            await stream.send_all(framer.send(data))
            while True:
                event = framer.next_event()
                if isinstance(event, NeedData):
                    framer.receive_data(await stream.receive_some(MAX_RECV))
                elif isinstance(event, EndOfStream):
                    raise ExchangeError(f"{server[0]}#{server[1]} closed the connection without a reply")
                elif event.data[:2] == data[:2]:
                    return event.data
    except (OSError, trio.BrokenResourceError, RemoteProtocolError) as exc:
        raise ExchangeError(f"TCP to {server[0]}#{server[1]}: {exc}") from None
