"""Forwarding, limits, errors, access control, tunnels and shutdown, in memory and virtual time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h11
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.config import ProxyConfig
from tests.servers.proxy.harness import HttpClient, MemoryListener, Origin, Reply, Seen, running_proxy

URL = "http://origin.test/a"


def echo(seen: Seen) -> Reply:
    return Reply(200, [("Content-Type", "text/plain")], f"{seen.method} {len(seen.body)}".encode())


async def raw_exchange(listener: MemoryListener, data: bytes) -> bytes:
    """Send raw bytes as a client and read until the proxy closes the connection."""
    stream = await listener.connect()
    await stream.send_all(data)
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    return bytes(received)


async def test_hop_by_hop_fields_are_dropped_and_via_added(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route(
        "/a", Reply(200, [("Connection", "X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "timeout=5")], b"x")
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        response = await h.get(
            URL,
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("TE", "trailers"),
            ("Host", "wrong.test"),
        )
        seen = origin.seen[0].headers
        assert "x-hop" not in seen
        assert "proxy-authorization" not in seen
        assert "te" not in seen
        assert seen["host"] == "origin.test"  # RFC 9112 section 3.2.2
        assert seen["via"] == "1.1 proxy.test:8080 (netlab)"
        assert "x-secret" not in response.headers
        assert "keep-alive" not in response.headers
        assert response.headers["via"] == "1.1 proxy.test:8080 (netlab)"


async def test_persistent_connections_both_sides(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        for _ in range(3):
            assert (await client.get(URL)).status == 200
        assert h.proxy.stats.connections == 1
        assert origin.connections == 1  # the pool reused the upstream connection
        assert h.proxy.pool.reuses == 2


async def test_a_pooled_connection_closed_by_the_origin_is_retried(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/b", Reply(200, [], b"ok", close_after=True))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        await client.get("http://origin.test/b")
        assert h.proxy.pool.idle_count == 1
        # The origin closed the connection while it idled in the pool (RFC 9112 section 9.3.1):
        # the GET, being idempotent, is sent again on a new connection.
        assert (await client.get("http://origin.test/b")).body == b"ok"
        assert origin.connections == 2
        assert len(origin.seen) == 2


async def test_request_bodies_are_streamed_both_framings(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        sized = await client.request("PUT", URL, body=b"x" * 100_000)
        chunked = await client.request("POST", URL, [("Transfer-Encoding", "chunked")], body=b"y" * 5000)
        assert (sized.body, chunked.body) == (b"PUT 100000", b"POST 5000")
        assert origin.seen[1].body == b"y" * 5000


async def test_expect_100_continue_is_relayed(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        stream = await h.listener.connect()
        conn = h11.Connection(h11.CLIENT)
        headers = [("Host", "origin.test"), ("Content-Length", "4"), ("Expect", "100-continue")]
        await stream.send_all(conn.send(h11.Request(method="POST", target=URL, headers=headers)) or b"")
        # The client waits for 100 (Continue) before sending its body: it comes from the origin.
        while (event := conn.next_event()) is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        assert isinstance(event, h11.InformationalResponse)
        assert event.status_code == 100
        await stream.send_all(
            (conn.send(h11.Data(data=b"body")) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        )
        while not isinstance(event := conn.next_event(), h11.Response):
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
        assert event.status_code == 200
        assert origin.seen[0].headers["expect"] == "100-continue"


async def test_max_forwards_trace_and_options(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        trace = await client.request(
            "TRACE", URL, [("Max-Forwards", "0"), ("Cookie", "secret"), ("X-Probe", "1")]
        )
        options = await client.request("OPTIONS", URL, [("Max-Forwards", "0")])
        forwarded = await client.request("OPTIONS", URL, [("Max-Forwards", "3")])
        assert trace.headers["content-type"] == "message/http"
        assert trace.body.startswith(b"TRACE http://origin.test/a HTTP/1.1\r\n")
        assert b"X-Probe: 1" in trace.body
        assert b"secret" not in trace.body  # RFC 9110 section 9.3.8
        assert "CONNECT" in options.headers["allow"]
        assert forwarded.body == b"OPTIONS 0"
        assert [s.headers["max-forwards"] for s in origin.seen] == ["2"]  # RFC 9110 section 7.6.2


async def test_errors_502_and_504(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    slow = Origin()
    slow.stall = True
    async with running_proxy(tmp_path, {"slow.test": slow}, config=ProxyConfig(upstream_timeout=30)) as h:
        unknown = await h.get("http://nowhere.test/")
        start = trio.current_time()
        timeout = await h.get("http://slow.test/")
        assert unknown.status == 502
        assert b"cannot resolve nowhere.test" in unknown.body
        assert unknown.headers["content-type"] == "text/html; charset=utf-8"
        assert timeout.status == 504
        assert trio.current_time() - start == 30
        assert h.log.tags() == ["TCP_MISS/502", "TCP_MISS/504"]


async def test_bad_requests_400_431_and_origin_form(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/page.html", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        garbage = await raw_exchange(h.listener, b"THIS IS NOT HTTP\r\n\r\n")
        huge = await raw_exchange(h.listener, b"GET http://origin.test/ HTTP/1.1\r\nX: " + b"a" * 70_000)
        local = await h.get("/index.html")
        prefixed = await h.get("/origin.test/page.html")  # the URL-prefix form
        assert garbage.startswith(b"HTTP/1.1 400 ")
        assert huge.startswith(b"HTTP/1.1 431 ")
        assert local.status == 400  # never forwarded back to the proxy itself
        assert (prefixed.status, prefixed.body) == (200, b"GET 0")
        # The proxy still serves everyone else.
        assert (await h.get("http://origin.test/page.html")).status == 200


async def test_request_head_timeout_is_408(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_proxy(tmp_path, {}, config=ProxyConfig(request_timeout=5)) as h:
        start = trio.current_time()
        reply = await raw_exchange(h.listener, b"GET http://origin.test/ HTTP/1.1\r\nHost: x\r\n")
        assert reply.startswith(b"HTTP/1.1 408 ")
        assert trio.current_time() - start == 5


async def test_idle_connections_are_closed(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_proxy(tmp_path, {}, config=ProxyConfig(idle_timeout=60)) as h:
        stream = await h.listener.connect()
        start = trio.current_time()
        assert await stream.receive_some(100) == b""
        assert trio.current_time() - start == 60


async def test_clients_outside_the_allow_list_get_403(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}, peer="192.0.2.99") as h:
        denied = await h.get(URL)
        assert denied.status == 403
        assert origin.seen == []
        assert h.log.lines[0].split()[2:4] == ["192.0.2.99", "TCP_DENIED/403"]
    config = ProxyConfig(allow=("192.0.2.0/24",))
    async with running_proxy(tmp_path, {"origin.test": origin}, peer="192.0.2.99", config=config) as h:
        assert (await h.get(URL)).status == 200


async def test_forwarding_loops_are_refused(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_proxy(tmp_path, {}) as h:
        looped = await h.get(URL, ("Via", "1.1 proxy.test:8080 (netlab)"))
        assert looped.status == 508


async def test_status_page(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route(
        "/big", Reply(200, [("Cache-Control", "max-age=60"), ("Content-Type", "image/png")], b"p" * 5000)
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get("http://origin.test/big")
        await h.get("http://origin.test/big")
        page = await h.get("http://proxy.test:8080/netlab/status")
        assert page.status == 200
        assert page.headers["content-type"].startswith("text/html")
        text = page.body.decode()
        assert "<th>Hit ratio</th><td>50.0%</td>" in text
        assert "http://origin.test/big" in text  # among the largest cached objects
        assert "TCP_MEM_HIT" in text


async def test_connect_tunnel_with_half_close(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async def upper_echo(stream: trio.abc.Stream) -> None:
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
        await stream.send_all(bytes(data).upper())  # answers only after the client's EOF
        await stream.aclose()

    class EchoOrigin(Origin):
        async def handle(self, stream: trio.abc.Stream) -> None:
            await upper_echo(stream)

    config = ProxyConfig(connect_ports=(443,))
    async with running_proxy(tmp_path, {"tls.test": EchoOrigin()}, config=config) as h:
        stream = await h.listener.connect()
        await stream.send_all(b"CONNECT tls.test:443 HTTP/1.1\r\nHost: tls.test:443\r\n\r\nearly ")
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 200 ")
        await stream.send_all(b"bytes")
        await stream.send_eof()  # type: ignore[attr-defined]
        answer = bytearray(head.split(b"\r\n\r\n", 1)[1])
        while chunk := await stream.receive_some(65536):
            answer += chunk
        assert bytes(answer) == b"EARLY BYTES"
        await h.until(lambda: len(h.log.lines) == 1)
        assert h.log.tags() == ["TCP_TUNNEL/200"]
        assert h.log.lines[0].split()[6] == "tls.test:443"

        refused = await raw_exchange(h.listener, b"CONNECT tls.test:25 HTTP/1.1\r\nHost: tls.test:25\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 403 ")


async def test_graceful_shutdown_finishes_the_request_in_flight(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/slow", Reply(200, [], b"done", delay=3))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        idle = await h.listener.connect()
        results: list[int] = []

        async def slow_request() -> None:
            client = HttpClient(await h.listener.connect())
            results.append((await client.get("http://origin.test/slow")).status)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_request)
            await trio.sleep(1)
            h.stopping.set()
            assert await idle.receive_some(100) == b""  # idle connections close at once
            assert trio.current_time() == 1
        assert results == [200]


async def test_an_unexpected_error_costs_one_connection_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers.proxy import cache_flow

    real_serve = cache_flow.serve

    async def buggy(*args: object, **kwargs: object) -> None:
        if b"/bug" in args[2].target:  # type: ignore[attr-defined]
            raise RuntimeError("a bug")
        await real_serve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_flow, "serve", buggy)
    origin = Origin()
    origin.route("/a", echo)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        stream = await h.listener.connect()
        await stream.send_all(b"GET http://origin.test/bug HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        assert await stream.receive_some(100) == b""  # that connection is closed ...
        assert (await h.get(URL)).status == 200  # ... and the proxy serves on


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 40), max_size=12))
async def test_requests_split_anywhere_get_the_same_answer(cuts: list[int]) -> None:
    raw = (
        b"GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\nAccept: */*\r\n\r\n"
        b"POST http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    pieces, rest = [], raw
    for cut in cuts:
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    origin = Origin()
    origin.route("/a", echo)
    with tempfile.TemporaryDirectory() as tmp:
        async with running_proxy(Path(tmp), {"origin.test": origin}) as h:
            stream = await h.listener.connect()
            for piece in pieces:
                if piece:
                    await stream.send_all(piece)
            conn = h11.Connection(h11.CLIENT)
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            bodies = []
            for _ in range(2):
                body = b""
                while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    elif isinstance(event, h11.Data):
                        body += event.data
                bodies.append(body)
                conn.start_next_cycle()
                conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                conn.send(h11.EndOfMessage())
            assert bodies == [b"GET 0", b"POST 3"]
