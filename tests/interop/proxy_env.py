"""A real proxy and real origins on 127.0.0.1 (port 0) for the curl and browser tests."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from netlab.aio.wallclock import WallClock
from netlab.config import ProxyConfig
from netlab.store.http_store import HttpStore
from servers.proxy.handler import Proxy
from servers.proxy.server import open_listeners, serve
from tests.servers.proxy.harness import LogCapture, Origin


@dataclass
class RealProxy:
    proxy: Proxy
    store: HttpStore
    port: int
    log: LogCapture

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def logged(self, count: int) -> list[str]:
        """The access-log tags once ``count`` lines are out (the log is written after the body)."""
        with trio.fail_after(10):
            while len(self.log.lines) < count:
                await trio.sleep(0.01)
        return self.log.tags()


async def serve_origin(nursery: trio.Nursery, origin: Origin, ssl_context: object = None) -> int:
    """Serve ``origin`` on 127.0.0.1, port chosen by the kernel; returns the port."""
    handler = origin.handle
    if ssl_context is not None:
        import ssl

        assert isinstance(ssl_context, ssl.SSLContext)

        async def handler(stream: trio.abc.Stream) -> None:
            await origin.handle(trio.SSLStream(stream, ssl_context, server_side=True))

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


@asynccontextmanager
async def real_proxy(tmp_path: Path, config: ProxyConfig | None = None) -> AsyncIterator[RealProxy]:
    """The proxy on a real socket, with its real connector and a real-threaded store."""
    config = config or ProxyConfig()
    capture = LogCapture()
    access = logging.getLogger("netlab.access.proxy")
    access.addHandler(capture)
    access.setLevel(logging.INFO)
    try:
        clock = WallClock()
        store = await HttpStore.open(
            tmp_path / "cache",
            clock=clock.now,
            max_bytes=config.cache_mb * 1024 * 1024,
            memory_bytes=config.memory_cache_mb * 1024 * 1024,
            memory_object_bytes=config.memory_object_kb * 1024,
            max_object_bytes=config.max_object_mb * 1024 * 1024,
        )
        try:
            listeners = await open_listeners("127.0.0.1:0")
            port = int(listeners[0].socket.getsockname()[1])  # type: ignore[attr-defined]
            async with trio.open_nursery() as nursery:
                stopping = trio.Event()
                proxy = await nursery.start(
                    partial(serve, config, store, listeners, stopping=stopping, clock=clock.now)
                )
                yield RealProxy(proxy, store, port, capture)
                stopping.set()
        finally:
            await store.aclose()
    finally:
        access.removeHandler(capture)


def tool_env() -> dict[str, str]:
    """The environment for curl and chromium: no proxy settings inherited from the caller."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
