"""The client side of the proxy: responses from the cache sent as prepared bytes, persistence,
pipelining, and ``Connection: close`` when the client asks for it or the server is stopping."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import h11
import trio
import trio.testing

from netlab.config import ProxyConfig
from netlab.store.http_store import Entry, HttpStore
from servers.proxy.wire import RequestMemo, prepare_head
from tests.servers.proxy.harness import HttpClient, Origin, Reply, running_proxy
from tests.servers.proxy.test_forward_driver import raw_exchange

URL = "http://origin.test/a"


def cacheable(body: bytes = b"hello") -> Reply:
    return Reply(200, [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")], body)


def responses(data: bytes, *methods: str) -> list[tuple[h11.Response, bytes]]:
    """Parse the responses in ``data`` to requests with ``methods`` (by default, GETs)."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[tuple[h11.Response, bytes]] = []
    for method in methods or ["GET"] * 100:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        head, body = None, b""
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return out
        assert head is not None
        out.append((head, body))
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            break
        conn.start_next_cycle()
    return out


def test_prepare_head_is_the_wire_form() -> None:
    head = prepare_head(200, b"", [(b"Content-Length", b"5"), (b"Age", b"3")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nAge: 3\r\n\r\n"
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(head + b"hello")
    event = conn.next_event()
    assert isinstance(event, h11.Response)
    assert (event.status_code, event.reason) == (200, b"OK")


async def test_pipelined_requests_after_a_hit_are_answered_in_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", cacheable(b"A"))
    origin.route("/b", cacheable(b"B"))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        data = (
            b"GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\n\r\n"
            b"HEAD http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\n\r\n"
            b"GET http://origin.test/b HTTP/1.1\r\nHost: origin.test\r\n\r\n"
            b"GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n"
        )
        # The proxy closes the connection after the last.
        answers = responses(await raw_exchange(h.listener, data), "GET", "HEAD", "GET", "GET")
        assert [(r.status_code, body) for r, body in answers] == [
            (200, b"A"),
            (200, b""),
            (200, b"B"),
            (200, b"A"),
        ]
        last = dict(answers[-1][0].headers)
        assert last[b"connection"] == b"close"  # RFC 9112 section 9.6
        assert [dict(r.headers)[b"x-cache"] for r, _ in answers] == [
            b"HIT from netlab",
            b"HIT from netlab",
            b"MISS from netlab",
            b"HIT from netlab",
        ]
        assert b"connection" not in dict(answers[0][0].headers)
        assert h.log.tags()[1:] == ["TCP_MEM_HIT/200", "TCP_HIT/200", "TCP_MISS/200", "TCP_MEM_HIT/200"]


async def test_an_http_1_0_client_gets_its_hit_and_the_connection_closes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", cacheable())
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        data = await raw_exchange(h.listener, b"GET http://origin.test/a HTTP/1.0\r\n\r\n")
        [(head, body)] = responses(data)
        assert (head.status_code, body, dict(head.headers)[b"connection"]) == (200, b"hello", b"close")


class SlowDisk(HttpStore):
    """A store whose disk reads wait for :attr:`gate` once it is set."""

    gate: trio.Event | None = None

    async def read_body(self, entry: Entry) -> AsyncGenerator[bytes, None]:
        if self.gate is not None:
            await self.gate.wait()
        async for chunk in super().read_body(entry):
            yield chunk


async def test_responses_during_shutdown_say_connection_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", cacheable(b"x" * 5000))
    origin.route("/slow", Reply(200, [], b"done", delay=3))
    config = ProxyConfig(memory_object_kb=1)  # the hit below comes from disk
    async with running_proxy(tmp_path, {"origin.test": origin}, config=config, store_class=SlowDisk) as h:
        store = h.store
        assert isinstance(store, SlowDisk)
        await h.get(URL)
        store.gate = trio.Event()
        heads: dict[str, dict[str, str]] = {}

        async def get(url: str) -> None:
            client = HttpClient(await h.listener.connect())
            response = await client.get(url)
            heads[url] = response.headers
            assert response.complete

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, URL)  # a hit, waiting for the disk
            nursery.start_soon(get, "http://origin.test/slow")  # a miss, waiting for the origin
            await trio.sleep(1)
            h.stopping.set()
            await h.until(lambda: h.proxy.closing)
            store.gate.set()
        assert heads[URL]["x-cache"] == "HIT from netlab"
        assert heads[URL]["connection"] == "close"
        assert heads["http://origin.test/slow"]["connection"] == "close"


def parsed(head: bytes) -> h11.Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return event


def test_the_request_memo_keeps_plain_get_and_head_heads_only() -> None:
    memo = RequestMemo()
    get = b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"
    memo.learn(get, parsed(get))
    assert memo.lookup(get) == (parsed(get), len(get))
    assert memo.lookup(get + b"GET /next") == (parsed(get), len(get))  # a pipelined request follows
    assert memo.lookup(get[:-2]) is None  # not a whole head yet
    assert memo.lookup(get.replace(b"a.test/", b"b.test/")) is None
    for head in (
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX: " + b"x" * 5000 + b"\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\nHost: a.test\n\n",  # h11 reads bare LF too; not kept
    ):
        memo.learn(head, parsed(head))
        assert memo.lookup(head) is None


async def test_a_remembered_request_that_the_cache_cannot_answer_reaches_h11(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", Reply(200, [("Cache-Control", "no-store")], b"fresh each time"))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        assert (await h.get(URL)).body == b"fresh each time"  # h11 parses it; the memo learns it
        assert len(h.proxy.request_memo) == 1
        client = await h.client()
        for _ in range(3):  # the same bytes: from the memo, answered through h11 all the same
            response = await client.get(URL)
            assert (response.status, response.body) == (200, b"fresh each time")
        assert [s.connection for s in origin.seen] == [1, 1, 1, 1]  # one pooled origin connection
        assert h.log.tags() == ["TCP_MISS/200"] * 4


async def test_a_client_that_closes_without_a_request_is_let_go(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_proxy(tmp_path, {}) as h:
        for data in (b"", b"GET http://origin.test/a HTTP/1.1\r\n"):  # nothing, or half a head
            stream = await h.listener.connect()
            if data:
                await stream.send_all(data)
            await stream.aclose()
            await h.until(lambda: h.proxy.stats.active_connections == 0)
        assert h.proxy.stats.connections == 2
        assert trio.current_time() == 0
