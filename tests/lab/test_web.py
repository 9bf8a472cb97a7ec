"""The lab's web origin driver (netlab.lab.web) over in-memory streams, in virtual time."""

from __future__ import annotations

import logging

import h11
import pytest
import trio
import trio.testing

from netlab.lab.site import PUBLISHED, load_site
from netlab.lab.web import IDLE_TIMEOUT, MAX_BODY, WebOrigin

SITE = load_site()


class Client:
    """An h11 client on one end of a memory stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, *events: h11.Event) -> None:
        for event in events:
            await self.stream.send_all(self.conn.send(event) or b"")

    async def get(
        self, target: str, *headers: tuple[str, str], method: str = "GET"
    ) -> tuple[h11.Response, bytes]:
        request = h11.Request(method=method, target=target, headers=[("Host", "www.shop.test"), *headers])
        await self.send(request, h11.EndOfMessage())
        return await self.response()

    async def response(self) -> tuple[h11.Response, bytes]:
        response: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(bytes(await self.stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()


async def closed(stream: trio.abc.Stream) -> bool:
    """Whether the server closed its end (EOF), reading past anything it still sent."""
    with trio.fail_after(IDLE_TIMEOUT * 2):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return True
            if not data:
                return True


@pytest.fixture
def served(nursery: trio.Nursery) -> tuple[WebOrigin, trio.abc.Stream]:
    origin = WebOrigin(SITE, clock=lambda: PUBLISHED + 1000)
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(origin.handle, server)
    return origin, client


async def test_persistent_connection_with_a_revalidation(served: tuple[WebOrigin, trio.abc.Stream]) -> None:
    origin, stream = served
    client = Client(stream)
    first, body = await client.get("/")
    assert first.status_code == 200 and body.startswith(b"<!DOCTYPE html>")
    tag = dict(first.headers)[b"etag"].decode()
    client.next_cycle()
    second, body = await client.get("/", ("If-None-Match", tag))
    assert second.status_code == 304 and body == b""
    client.next_cycle()
    head, body = await client.get("/images/logo.svg", method="HEAD")
    assert head.status_code == 200 and body == b""
    assert int(dict(head.headers)[b"content-length"]) == len(SITE.pages["/images/logo.svg"][0].body)
    assert origin.requests == 3


async def test_one_access_log_line_per_request(
    served: tuple[WebOrigin, trio.abc.Stream], caplog: pytest.LogCaptureFixture
) -> None:
    _, stream = served
    client = Client(stream)
    with caplog.at_level(logging.INFO, logger="netlab.access.lab-web"):
        await client.get("/nothing")
    lines = [r.getMessage() for r in caplog.records if r.name == "netlab.access.lab-web"]
    assert len(lines) == 1
    assert lines[0].startswith("- - - [")
    assert lines[0].endswith('"GET /nothing HTTP/1.1" 404 29')


async def test_connection_close_is_honoured(served: tuple[WebOrigin, trio.abc.Stream]) -> None:
    _, stream = served
    response, _ = await Client(stream).get("/style.css", ("Connection", "close"))
    assert response.status_code == 200
    assert await closed(stream)


async def test_an_idle_connection_is_closed(
    served: tuple[WebOrigin, trio.abc.Stream], autojump_clock: trio.testing.MockClock
) -> None:
    _, stream = served
    start = trio.current_time()
    assert await closed(stream)
    assert trio.current_time() - start == pytest.approx(IDLE_TIMEOUT)


async def test_a_request_head_that_never_ends_is_cut_off(
    served: tuple[WebOrigin, trio.abc.Stream], autojump_clock: trio.testing.MockClock
) -> None:
    _, stream = served
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: www.shop.test\r\n")
    assert await closed(stream)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 section 3.2)
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000, 431),  # a head over 16 KiB
    ],
)
async def test_bad_requests_get_an_error_and_the_connection_closes(
    served: tuple[WebOrigin, trio.abc.Stream], raw: bytes, status: int
) -> None:
    origin, stream = served
    await stream.send_all(raw)
    client = Client(stream)
    response, body = await client.response()
    assert response.status_code == status
    assert body.startswith(b"bad request")
    assert await closed(stream)
    assert origin.bad_requests == 1


async def test_a_long_request_body_gets_413(served: tuple[WebOrigin, trio.abc.Stream]) -> None:
    origin, stream = served
    client = Client(stream)
    length = ("Content-Length", str(MAX_BODY + 1))
    await client.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), length]),
        h11.Data(data=b"x" * (MAX_BODY + 1)),
    )
    response, _ = await client.response()
    assert response.status_code == 413
    assert await closed(stream)
    assert origin.bad_requests == 1


async def test_a_short_request_body_is_read_and_the_method_refused(
    served: tuple[WebOrigin, trio.abc.Stream],
) -> None:
    _, stream = served
    client = Client(stream)
    await client.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "5")]),
        h11.Data(data=b"hello"),
        h11.EndOfMessage(),
    )
    response, _ = await client.response()
    assert response.status_code == 405
    client.next_cycle()
    again, _ = await client.get("/style.css")  # the connection goes on
    assert again.status_code == 200


async def test_a_client_that_leaves_mid_request_ends_its_connection_task() -> None:
    origin = WebOrigin(SITE, clock=lambda: PUBLISHED)
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    await client.aclose()
    with trio.fail_after(1):
        await origin.handle(server)
    assert origin.requests == 0
    assert origin.bad_requests == 1
