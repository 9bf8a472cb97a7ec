"""Requests that overlap in the cache: an invalidation racing a response that is still being stored.

The proxy streams a response to its client and makes it a cache entry once the whole body has
arrived, so another client can send an unsafe request for the same URI, and see it invalidate,
before the first response's entry lands.  RFC 9111 section 4.4 wants the stored responses gone
after the unsafe request: the late entry must not land.  These tests hold the store's commit back
with an event, so the interleaving is the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from netlab.store.http_store import Entry, HttpStore
from tests.servers.proxy.harness import HttpClient, Origin, Reply, Seen, running_proxy

URL = "http://origin.test/doc"


class HeldStore(HttpStore):
    """A store whose commits wait for :attr:`release` while :attr:`hold` is set."""

    hold = False
    release: trio.Event
    waiting = 0

    async def commit_body(self, *args: Any, **kwargs: Any) -> Entry | None:
        if self.hold:
            self.waiting += 1
            await self.release.wait()
        return await super().commit_body(*args, **kwargs)


def versioned(origin: Origin) -> None:
    """GET answers with the current version; POST makes a new one."""
    version = [1]

    def reply(seen: Seen) -> Reply:
        if seen.method == "POST":
            version[0] += 1
        return Reply(200, [("Cache-Control", "max-age=3600")], b"%s v%d" % (seen.method.encode(), version[0]))

    origin.route("/doc", reply)


async def test_an_invalidation_beats_a_store_still_in_progress(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    versioned(origin)
    async with running_proxy(tmp_path, {"origin.test": origin}, store_class=HeldStore) as h:
        store = h.store
        assert isinstance(store, HeldStore)
        store.hold, store.release = True, trio.Event()
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def first_get() -> None:
                got.append((await HttpClient(await h.listener.connect()).get(URL)).body)

            # 1. A GET: the origin's whole response is in; its entry waits to be committed.
            nursery.start_soon(first_get)
            await h.until(lambda: store.waiting == 1)
            # 2. A POST from another client: it invalidates /doc, where nothing is stored yet.
            posted = await HttpClient(await h.listener.connect()).request("POST", URL, body=b"x")
            assert posted.body == b"POST v2"
            await h.until(lambda: len(h.log.lines) == 1)
            # 3. Now the GET's commit goes ahead: it began before the invalidation: it must not land.
            store.hold = False
            store.release.set()
        assert got == [b"GET v1"]
        await h.until(lambda: len(h.log.lines) == 2)
        assert store.variants(URL) == []
        after = await h.get(URL)
        assert (after.body, after.headers["x-cache"]) == (b"GET v2", "MISS from netlab")
        assert [s.method for s in origin.seen] == ["GET", "POST", "GET"]


async def test_a_fetch_that_starts_after_the_invalidation_is_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    versioned(origin)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        await client.get(URL)
        await client.request("POST", URL, body=b"x")
        assert (await client.get(URL)).headers["x-cache"] == "MISS from netlab"
        again = await client.get(URL)
        assert (again.body, again.headers["x-cache"]) == (b"GET v2", "HIT from netlab")


async def test_a_client_that_has_the_whole_response_finds_it_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The last chunk waits for the commit: asking again at once is a hit, also across clients."""
    origin = Origin()
    origin.route("/doc", Reply(200, [("Cache-Control", "max-age=60")], [b"a" * 1000, b"b" * 1000]))
    async with running_proxy(tmp_path, {"origin.test": origin}, store_class=HeldStore) as h:
        store = h.store
        assert isinstance(store, HeldStore)
        store.hold, store.release = True, trio.Event()
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def get() -> None:
                got.append((await HttpClient(await h.listener.connect()).get(URL)).body)

            nursery.start_soon(get)
            await h.until(lambda: store.waiting == 1)
            assert got == []  # the body is in, but the client has not got all of it yet
            store.release.set()
        assert got == [b"a" * 1000 + b"b" * 1000]
        store.hold = False
        again = await HttpClient(await h.listener.connect()).get(URL)
        assert again.headers["x-cache"] == "HIT from netlab"
        assert len(origin.seen) == 1
