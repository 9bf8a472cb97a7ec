"""Helpers shared by the reliable-transport driver tests: links, listeners and echo handlers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import trio

from netlab.aio.endpoint import Addr, MemoryNetwork, Route
from netlab.aio.rdt import Handler, RdtListener
from netlab.aio.rdt_stream import RdtStream
from netlab.aio.relay import Impairment
from netlab.transport.engine import TransportParams

SERVER = ("127.0.0.1", 9001)

# Small segments so that a test transfer is many segments; short timers so retries are quick.
PARAMS = TransportParams(protocol="sr", window=8, seq_bits=8, mss=1000, initial_rto=0.5, max_retries=8)


def link_route(make_model: Callable[[Addr], Impairment]) -> Route:
    """A MemoryNetwork route through one link model per sending address (so per direction)."""
    models: dict[Addr, Impairment] = {}

    def route(data: bytes, src: Addr, dst: Addr, now: float) -> Iterable[tuple[float, bytes]]:
        if src not in models:
            models[src] = make_model(src)
        return [(at - now, payload) for at, payload in models[src].transmit(data, now)]

    return route


async def start_listener(
    net: MemoryNetwork,
    nursery: trio.Nursery,
    handler: Handler,
    params: TransportParams = PARAMS,
    **kwargs: int,
) -> RdtListener:
    listener = RdtListener(net.endpoint(*SERVER), params, rng=random.Random(1), **kwargs)
    await nursery.start(listener.serve, handler)
    return listener


async def read_all(stream: RdtStream) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some():
        got += chunk
    return bytes(got)


async def echo(stream: RdtStream) -> None:
    """Read everything until EOF, then send it back and close."""
    await stream.send_all(await read_all(stream))
    await stream.send_eof()
