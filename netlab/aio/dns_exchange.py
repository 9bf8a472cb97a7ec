"""Asking a DNS server: one query over UDP or TCP, and driving a trace.

Strategy: the thinnest drivers over the machines.  :func:`exchange_udp` sends from a fresh
socket (a fresh source port) and accepts only a datagram from the server asked that carries the
query's ID, resending after each timeout; :func:`exchange_tcp` opens a connection, frames the
query (:mod:`netlab.proto.dns_tcp`) and reads one framed reply.  :func:`run_trace` connects a
:class:`netlab.proto.dns_trace.Trace` to one UDP socket, and to a TCP connection for each query
the machine wants over TCP, with the machine's own timer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import trio

from netlab.aio.endpoint import Addr, UdpEndpoint, open_udp_endpoint
from netlab.proto.dns_tcp import DnsStream, EndOfStream, NeedData
from netlab.proto.dns_trace import Outgoing, Trace, TraceEvent
from netlab.proto.dns_wire import RemoteProtocolError

__all__ = ["ExchangeError", "exchange_tcp", "exchange_udp", "run_trace"]

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


async def run_trace(trace: Trace, on_event: Callable[[TraceEvent], None]) -> None:
    """Drive ``trace`` until it finishes, reporting each of its events to ``on_event``."""
    inbox_send, inbox = trio.open_memory_channel[tuple[bytes, Addr]](64)
    endpoint = await open_udp_endpoint("0.0.0.0", 0)

    def deliver(item: tuple[bytes, Addr]) -> None:
        # Only one reply is awaited at a time; a flood of others is dropped, not queued.
        with contextlib.suppress(trio.WouldBlock):
            inbox_send.send_nowait(item)

    async def pump_udp() -> None:
        while True:
            deliver(await endpoint.recvfrom())

    async def over_tcp(out: Outgoing) -> None:
        # A failure needs no report: the machine's timer notices the missing reply.
        with trio.move_on_after(trace.timeout), contextlib.suppress(ExchangeError):
            deliver((await exchange_tcp(out.data, out.server), out.server))

    def report() -> None:
        while (event := trace.next_event()) is not None:
            on_event(event)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump_udp)
            while not trace.finished:
                for out in trace.datagrams_to_send(trio.current_time()):
                    if out.tcp:
                        nursery.start_soon(over_tcp, out)
                    else:
                        await endpoint.sendto(out.data, out.server)
                report()
                if trace.finished:
                    break
                deadline = trace.get_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline) as waited:
                    data, peer = await inbox.receive()
                if waited.cancelled_caught:
                    trace.handle_timer(trio.current_time())
                else:
                    trace.receive_datagram(data, peer, trio.current_time())
                report()
            nursery.cancel_scope.cancel()
    finally:
        await endpoint.aclose()
