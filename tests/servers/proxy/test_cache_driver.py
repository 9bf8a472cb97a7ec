"""The proxy's cache behaviour end to end, in memory and in virtual time (autojump_clock)."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from netlab.config import ProxyConfig
from tests.servers.proxy.harness import Origin, Reply, Seen, running_proxy

URL = "http://origin.test/a"


def cacheable(body: bytes = b"hello", *extra: tuple[str, str]) -> Reply:
    return Reply(
        200, [("Cache-Control", "max-age=60"), ("ETag", '"v1"'), ("Content-Type", "text/plain"), *extra], body
    )


async def test_miss_then_hit(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route("/a", cacheable())
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        first = await h.get(URL)
        await trio.sleep(10)
        second = await h.get(URL)
        await h.settle()
        assert (first.body, second.body) == (b"hello", b"hello")
        assert first.headers["x-cache"] == "MISS from netlab"
        assert second.headers["x-cache"] == "HIT from netlab"
        assert second.headers["age"] == "10"  # RFC 9111 section 5.1, 4.2.3
        assert len(origin.seen) == 1
        assert h.log.tags() == ["TCP_MISS/200", "TCP_MEM_HIT/200"]
        line = h.log.lines[0].split()
        assert line[2:] == [
            "127.0.0.1",
            "TCP_MISS/200",
            line[4],
            "GET",
            URL,
            "-",
            "HIER_DIRECT/192.0.2.10",
            "text/plain",
        ]


async def test_revalidation_304_updates_and_serves_the_stored_body(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()

    def reply(seen: Seen) -> Reply:
        if seen.headers.get("if-none-match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("Cache-Control", "max-age=60"), ("X-Version", "2")])
        return cacheable(b"body-v1", ("X-Version", "1"))

    origin.route("/a", reply)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        await trio.sleep(61)  # stale now
        again = await h.get(URL)
        assert again.body == b"body-v1"
        assert again.headers["x-version"] == "2"  # header updated from the 304 (section 4.3.4)
        assert origin.seen[1].headers["if-none-match"] == '"v1"'  # section 4.3.1
        third = await h.get(URL)  # fresh again thanks to the 304's max-age
        await h.settle()
        assert third.headers["x-cache"] == "HIT from netlab"
        assert len(origin.seen) == 2
        assert h.log.tags() == ["TCP_MISS/200", "TCP_REFRESH_UNMODIFIED/200", "TCP_MEM_HIT/200"]


async def test_revalidation_200_replaces_the_stored_response(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    versions = iter([b"old", b"new"])
    origin.route(
        "/a", lambda seen: Reply(200, [("Cache-Control", "max-age=60"), ("ETag", '"x"')], next(versions))
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        assert (await h.get(URL)).body == b"old"
        await trio.sleep(100)
        assert (await h.get(URL)).body == b"new"
        assert (await h.get(URL)).body == b"new"
        await h.settle()
        assert h.log.tags() == ["TCP_MISS/200", "TCP_REFRESH_MODIFIED/200", "TCP_MEM_HIT/200"]
        assert h.store.object_count == 1


async def test_vary_keeps_one_variant_per_request_header(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route(
        "/a",
        lambda seen: Reply(
            200,
            [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
            seen.headers.get("accept-language", "none").encode(),
        ),
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        assert (await h.get(URL, ("Accept-Language", "fr"))).body == b"fr"
        assert (await h.get(URL, ("Accept-Language", "de"))).body == b"de"
        assert (await h.get(URL, ("Accept-Language", "fr"))).body == b"fr"
        assert (await h.get(URL)).body == b"none"
        await h.settle()
        assert len(origin.seen) == 3
        assert h.log.tags()[2] == "TCP_MEM_HIT/200"
        assert h.store.object_count == 3


async def test_post_is_forwarded_not_cached_and_invalidates(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route(
        "/a", lambda seen: Reply(200, [("Cache-Control", "max-age=60")], seen.method.encode() + seen.body)
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        client = await h.client()
        assert (await client.get(URL)).body == b"GET"
        assert (await client.request("POST", URL, body=b"+data")).body == b"POST+data"
        assert (await client.request("POST", URL, body=b"+more")).body == b"POST+more"
        assert (await client.get(URL)).headers["x-cache"] == "MISS from netlab"  # section 4.4
        await h.settle()
        assert [s.method for s in origin.seen] == ["GET", "POST", "POST", "GET"]
        assert h.log.tags() == ["TCP_MISS/200"] * 4


async def test_location_of_an_unsafe_response_is_invalidated_on_the_same_origin_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    for path in ("/a", "/b"):
        origin.route(path, cacheable())
    origin.route("/form", Reply(303, [("Location", "/b"), ("Content-Location", "http://other.test/a")]))
    async with running_proxy(tmp_path, {"origin.test": origin, "other.test": origin}) as h:
        await h.get("http://origin.test/b")
        await h.get("http://other.test/a")
        await (await h.client()).request("POST", "http://origin.test/form", body=b"x")
        assert (await h.get("http://origin.test/b")).headers["x-cache"].startswith("MISS")
        assert (await h.get("http://other.test/a")).headers["x-cache"].startswith("HIT")


async def test_responses_that_must_not_be_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/no-store", Reply(200, [("Cache-Control", "no-store, max-age=60")], b"x"))
    origin.route("/private", Reply(200, [("Cache-Control", "private, max-age=60")], b"x"))
    origin.route("/auth", Reply(200, [("Cache-Control", "max-age=60")], b"x"))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        for _ in range(2):
            await h.get("http://origin.test/no-store")
            await h.get("http://origin.test/private")
            await h.get("http://origin.test/auth", ("Authorization", "Basic dTpw"))
            await h.get("http://origin.test/a", ("Cache-Control", "no-store"))
        assert len(origin.seen) == 8
        assert h.store.object_count == 0


async def test_only_if_cached(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route("/a", cacheable())
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        assert (await h.get(URL, ("Cache-Control", "only-if-cached"))).status == 504  # 5.2.1.7
        await h.get(URL)
        assert (await h.get(URL, ("Cache-Control", "only-if-cached"))).status == 200
        assert len(origin.seen) == 1


async def test_client_conditionals_and_head_answered_from_the_cache(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", cacheable(b"0123456789", ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        inm = await h.get(URL, ("If-None-Match", '"v1"'))
        ims = await h.get(URL, ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"))
        changed = await h.get(URL, ("If-None-Match", '"v0"'))
        head = await (await h.client()).request("HEAD", URL)
        await h.settle()
        assert (inm.status, inm.body, inm.headers["etag"]) == (304, b"", '"v1"')
        assert ims.status == 304
        assert (changed.status, changed.body) == (200, b"0123456789")
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "10")
        assert len(origin.seen) == 1
        assert h.log.tags()[1:] == ["TCP_INM_HIT/304", "TCP_IMS_HIT/304", "TCP_MEM_HIT/200", "TCP_HIT/200"]


async def test_stale_if_error_serves_the_stale_response(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    healthy = [True]
    origin.route(
        "/a",
        lambda seen: (
            Reply(200, [("Cache-Control", "max-age=10, stale-if-error=600"), ("ETag", '"1"')], b"ok")
            if healthy[0]
            else Reply(503, [], b"down")
        ),
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        healthy[0] = False
        await trio.sleep(20)
        stale = await h.get(URL)
        await trio.sleep(1000)
        error = await h.get(URL)  # beyond the stale-if-error window
        await h.settle()
        assert (stale.status, stale.body) == (200, b"ok")
        assert error.status == 503
        assert h.log.tags() == ["TCP_MISS/200", "TCP_REFRESH_FAIL_OLD/200", "TCP_REFRESH_FAIL_ERR/503"]


async def test_stale_while_revalidate_answers_at_once_and_refreshes_in_the_background(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    versions = iter([b"v1", b"v2"])
    origin.route(
        "/a",
        lambda seen: Reply(
            200, [("Cache-Control", "max-age=10, stale-while-revalidate=60")], next(versions, b"v3")
        ),
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
        await trio.sleep(30)
        stale = await h.get(URL)
        await h.settle()  # the background revalidation runs
        fresh = await h.get(URL)
        assert (stale.body, fresh.body) == (b"v1", b"v2")
        assert fresh.headers["x-cache"].startswith("HIT")
        assert len(origin.seen) == 2
        assert h.proxy.stats.background_revalidations == 1


async def test_must_revalidate_without_origin_is_504(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origins = {"origin.test": origin}
    origin.route("/a", Reply(200, [("Cache-Control", "max-age=5, must-revalidate"), ("ETag", '"1"')], b"x"))
    async with running_proxy(tmp_path, origins) as h:
        await h.get(URL)
        del origins["origin.test"]  # the origin cannot be reached any more ...
        await trio.sleep(40)  # ... once the pooled connection to it has timed out
        assert (await h.get(URL, ("Cache-Control", "max-stale=1000"))).status == 504  # 5.2.2.2


async def test_an_incomplete_response_is_never_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route(
        "/a", Reply(200, [("Cache-Control", "max-age=60")], [b"x" * 1000, b"y" * 1000], reset_after=1500)
    )
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        broken = await h.get(URL)
        assert not broken.complete  # the client sees the failure, not a short "complete" response
        assert len(broken.body) < 2000
        await h.get(URL)
        await h.settle()
        assert h.store.object_count == 0
        assert h.log.tags() == ["TCP_MISS_ABORTED/200", "TCP_MISS_ABORTED/200"]
        assert len(origin.seen) == 2


async def test_chunked_response_is_stored_with_its_length(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    origin.route("/a", Reply(200, [("Cache-Control", "max-age=60")], [b"ab", b"cd", b"ef"], chunked=True))
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        first = await h.get(URL)
        second = await h.get(URL)
        assert first.headers.get("transfer-encoding") == "chunked"
        assert (second.body, second.headers["content-length"]) == (b"abcdef", "6")


async def test_large_objects_stream_from_disk_and_small_ones_from_memory(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = Origin()
    big = bytes(range(256)) * 8192  # 2 MiB, over the memory tier's object limit
    origin.route(
        "/big",
        Reply(
            200, [("Cache-Control", "max-age=60")], [big[i : i + 65536] for i in range(0, len(big), 65536)]
        ),
    )
    config = ProxyConfig(memory_object_kb=1024)
    async with running_proxy(tmp_path, {"origin.test": origin}, config=config) as h:
        assert (await h.get("http://origin.test/big")).body == big
        assert (await h.get("http://origin.test/big")).body == big
        await h.settle()
        assert h.log.tags() == ["TCP_MISS/200", "TCP_HIT/200"]


async def test_cache_survives_a_restart(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin()
    origin.route("/a", cacheable())
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        await h.get(URL)
    async with running_proxy(tmp_path, {"origin.test": origin}) as h:
        again = await h.get(URL)
        assert (again.body, again.headers["x-cache"]) == (b"hello", "HIT from netlab")
        assert len(origin.seen) == 1
