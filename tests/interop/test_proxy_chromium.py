"""A real browser through the proxy: headless Chromium loads a page, then again from the cache,
then an https page through a CONNECT tunnel."""

from __future__ import annotations

import os
import signal
import ssl
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from netlab.aio.wallclock import WallClock
from netlab.config import ProxyConfig
from netlab.store.http_store import HttpStore
from servers.proxy.pool import Connector, UpstreamError
from servers.proxy.server import open_listeners, serve
from tests.conftest import require_tool
from tests.interop.proxy_env import RealProxy, serve_origin, tool_env
from tests.servers.proxy.harness import LogCapture, Origin, Reply

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

CACHED = [("Cache-Control", "max-age=3600")]


def png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 1x1 PNG of one colour (RFC 2083), so the browser really decodes an image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    header = struct.pack("!IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PAGE = b"""<!DOCTYPE html><html><head><title>netlab page</title>
<link rel="stylesheet" href="/style.css"></head>
<body><h1 id="t">Through the proxy</h1><img src="/red.png" alt="red"><img src="/blue.png" alt="blue">
</body></html>"""


class LoopbackOnly:
    """The real connector, refusing anything but loopback origins: whatever the browser tries
    on its own must not leave this machine."""

    def __init__(self) -> None:
        self.inner = Connector(None, 5.0)

    async def connect(self, host: str, port: int) -> tuple[trio.abc.Stream, str]:
        if host not in ("127.0.0.1", "localhost"):
            raise UpstreamError(502, f"{host}: only loopback origins in this test")
        return await self.inner.connect(host, port)


@asynccontextmanager
async def loopback_proxy(tmp_path: Path, config: ProxyConfig) -> AsyncIterator[RealProxy]:
    import logging

    capture = LogCapture()
    access = logging.getLogger("netlab.access.proxy")
    access.addHandler(capture)
    access.setLevel(logging.INFO)
    clock = WallClock()
    store = await HttpStore.open(
        tmp_path / "cache",
        clock=clock.now,
        max_bytes=64 << 20,
        memory_bytes=16 << 20,
        memory_object_bytes=1 << 20,
        max_object_bytes=16 << 20,
    )
    try:
        listeners = await open_listeners("127.0.0.1:0")
        port = int(listeners[0].socket.getsockname()[1])  # type: ignore[attr-defined]
        async with trio.open_nursery() as nursery:
            stopping = trio.Event()
            proxy = await nursery.start(
                partial(
                    serve,
                    config,
                    store,
                    listeners,
                    stopping=stopping,
                    clock=clock.now,
                    connector=LoopbackOnly(),
                )
            )
            yield RealProxy(proxy, store, port, capture)
            stopping.set()
    finally:
        await store.aclose()
        access.removeHandler(capture)


async def chromium(tmp_path: Path, proxy_port: int, url: str, run: int) -> str:
    """The DOM of ``url`` as headless Chromium sees it through the proxy, with an empty profile."""
    tool = require_tool("chromium", "chromium")
    profile = tmp_path / f"profile-{run}"
    command = [
        tool,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",  # by default loopback would bypass the proxy
        "--ignore-certificate-errors",  # the https origin's certificate is a test CA's
        "--dump-dom",
        url,
    ]
    dom = tmp_path / f"dom-{run}.html"
    with open(dom, "wb") as out, open(tmp_path / f"chromium-{run}.log", "wb") as err:  # noqa: ASYNC230
        process = await trio.lowlevel.open_process(
            command, stdout=out, stderr=err, env=tool_env(), start_new_session=True
        )
        try:
            with trio.fail_after(90):
                await process.wait()
        finally:
            # Chromium starts helper processes; they all share its new process group.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return dom.read_text("utf-8", "replace")


def results(proxy: RealProxy, start: int) -> dict[str, str]:
    """URL path -> result code of the access-log lines from ``start`` on."""
    out = {}
    for line in proxy.log.lines[start:]:
        fields = line.split()
        out[fields[6].split("/", 3)[-1]] = fields[3]
    return out


async def test_chromium_through_the_proxy(tmp_path: Path) -> None:
    origin = Origin()
    origin.route("/page.html", Reply(200, [*CACHED, ("Content-Type", "text/html")], PAGE))
    origin.route("/style.css", Reply(200, [*CACHED, ("Content-Type", "text/css")], b"h1 { color: green }"))
    origin.route("/red.png", Reply(200, [*CACHED, ("Content-Type", "image/png")], png((255, 0, 0))))
    origin.route("/blue.png", Reply(200, [*CACHED, ("Content-Type", "image/png")], png((0, 0, 255))))
    origin.route(
        "/secure.html",
        Reply(200, [("Content-Type", "text/html")], b"<html><body><p>secure content</p></body></html>"),
    )
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(tls)
    async with trio.open_nursery() as nursery:
        port = await serve_origin(nursery, origin)
        tls_port = await serve_origin(nursery, origin, tls)
        page = f"http://127.0.0.1:{port}/page.html"
        async with loopback_proxy(tmp_path, ProxyConfig(connect_ports=(tls_port,))) as proxy:
            first = await chromium(tmp_path, proxy.port, page, 1)
            assert "Through the proxy" in first
            await proxy.logged(4)
            before = len(proxy.log.lines)
            loaded_first = results(proxy, 0)
            assert {
                k: loaded_first[k] for k in ("page.html", "style.css", "red.png", "blue.png")
            } == dict.fromkeys(("page.html", "style.css", "red.png", "blue.png"), "TCP_MISS/200")

            second = await chromium(tmp_path, proxy.port, page, 2)  # a fresh profile: empty browser cache
            assert "Through the proxy" in second
            await proxy.logged(before + 4)
            loaded_again = results(proxy, before)
            for path in ("page.html", "style.css", "red.png", "blue.png"):
                assert loaded_again[path] == "TCP_MEM_HIT/200", (path, loaded_again)
            assert [
                len(origin.requests(p)) for p in ("/page.html", "/style.css", "/red.png", "/blue.png")
            ] == [1, 1, 1, 1]

            before = len(proxy.log.lines)
            secure = await chromium(tmp_path, proxy.port, f"https://localhost:{tls_port}/secure.html", 3)
            assert "secure content" in secure
            await proxy.logged(before + 1)
            tunnels = [line for line in proxy.log.lines[before:] if f"localhost:{tls_port}" in line]
            assert tunnels
            assert tunnels[0].split()[3] == "TCP_TUNNEL/200"
        nursery.cancel_scope.cancel()
