"""HEAD and the stored GET responses (RFC 9111 section 4.3.5), in memory and virtual time.

A HEAD request that reaches the origin (to revalidate a stale response, or because the cache may
not answer it) brings back a head that describes the resource: when its validators match the
stored GET response's, the stored headers are updated from it; when they do not, the stored
response is stale, and is dropped.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from tests.servers.proxy.harness import Origin, Reply, Seen, running_proxy

URL = "http://origin.test/a"
BODY = b"hello"


def origin_with(head_etag: str, head_max_age: int = 100) -> Origin:
    """GET: ETag "v1", fresh for 10 s.  HEAD: 200 (never 304) with ``head_etag``."""
    origin = Origin()

    def reply(seen: Seen) -> Reply:
        if seen.method == "HEAD":
            headers = [
                ("ETag", head_etag),
                ("Cache-Control", f"max-age={head_max_age}"),
                ("Content-Length", str(len(BODY))),
                ("X-Version", "head"),
            ]
            return Reply(200, headers, b"", chunked=True)  # (chunked: no Content-Length added)
        return Reply(200, [("ETag", '"v1"'), ("Cache-Control", "max-age=10"), ("X-Version", "get")], BODY)

    origin.route("/a", reply)
    return origin


async def test_a_matching_head_response_freshens_the_stored_get(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = origin_with('"v1"')
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        await trio.sleep(20)  # stale: a HEAD revalidates, with HEAD
        head = await (await h.client()).request("HEAD", URL)
        get = await h.get(URL)  # fresh again for 100 s: from the cache, with the new headers
        await h.settle()
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "5")
        assert head.headers["x-version"] == "head"
        assert (get.body, get.headers["x-version"], get.headers["x-cache"]) == (
            BODY,
            "head",
            "HIT from netlab",
        )
        assert [(s.method, s.headers.get("if-none-match")) for s in origin.seen] == [
            ("GET", None),
            ("HEAD", '"v1"'),
        ]
        assert h.log.tags() == ["TCP_MISS/200", "TCP_REFRESH_UNMODIFIED/200", "TCP_MEM_HIT/200"]


async def test_a_head_response_about_another_representation_makes_the_stored_get_stale(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = origin_with('"v2"')
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        await trio.sleep(20)
        head = await (await h.client()).request("HEAD", URL)
        assert (head.status, head.headers["etag"], head.headers["x-cache"]) == (
            200,
            '"v2"',
            "MISS from netlab",
        )
        assert h.store.variants(URL) == []
        await h.get(URL)
        await h.settle()
        assert [s.method for s in origin.seen] == ["GET", "HEAD", "GET"]
        assert h.log.tags() == ["TCP_MISS/200", "TCP_REFRESH_MODIFIED/200", "TCP_MISS/200"]


async def test_a_forwarded_head_updates_or_drops_the_stored_get(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    for head_etag, then in (('"v1"', "HIT from netlab"), ('"v2"', "MISS from netlab")):
        origin = origin_with(head_etag)
        async with running_proxy(tmp_path / head_etag.strip('"'), {"origin.test": origin}) as h:
            await h.get(URL)
            # A precondition for the origin: the cache does not answer, the HEAD is forwarded.
            head = await (await h.client()).request("HEAD", URL, [("If-Match", '"v1"')])
            assert head.status == 200
            await trio.sleep(50)  # the stored GET's own 10 s are long over
            get = await h.get(URL)
            await h.settle()
            assert get.headers["x-cache"] == then
            assert get.headers["x-version"] == ("head" if then.startswith("HIT") else "get")
