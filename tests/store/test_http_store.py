"""The cache store on a real directory: tee writes, restart, LRU, memory tier, recovery, sharing."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio
import trio.testing

from netlab.proto.http_stored import StoredResponse
from netlab.store.http_generation import MARKS, Invalidations
from netlab.store.http_store import Entry, HttpStore
from tests.proto.http_helpers import stored

KIB = 1024
T = TypeVar("T")
_clock = itertools.count(1.0)


async def open_store(directory: Path, **limits: int) -> HttpStore:
    settings = {"max_bytes": 10 * KIB * KIB, "memory_bytes": 64 * KIB, "memory_object_bytes": 16 * KIB}
    settings.update(limits)
    return await HttpStore.open(
        directory,
        clock=lambda: float(next(_clock)),
        max_bytes=settings["max_bytes"],
        memory_bytes=settings["memory_bytes"],
        memory_object_bytes=settings["memory_object_bytes"],
        max_object_bytes=settings.get("max_object_bytes", 8 * KIB * KIB),
        shared=bool(settings.get("shared", 0)),
    )


async def put(store: HttpStore, key: str, body: bytes, meta: StoredResponse | None = None) -> Entry:
    writer = store.begin(key)
    for i in range(0, len(body), 1000):
        await writer.write(body[i : i + 1000])
    entry = await writer.commit(meta or stored("Cache-Control: max-age=60"), [])
    assert entry is not None
    return entry


async def body_of(store: HttpStore, entry: Entry) -> bytes:
    memory = store.memory_body(entry)
    if memory is not None:
        return memory
    return b"".join([chunk async for chunk in store.read_body(entry)])


async def test_store_then_read_back_from_memory_and_disk(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    small = await put(store, "http://a.test/s", b"s" * 5000)
    large = await put(store, "http://a.test/l", b"L" * 100_000)
    assert store.variants("http://a.test/s") == [small]
    assert store.memory_body(small) == b"s" * 5000  # small: in the memory tier
    assert store.memory_body(large) is None  # larger than memory_object_bytes: disk only
    assert await body_of(store, large) == b"L" * 100_000
    # The stored headers frame the stored body.
    assert (b"Content-Length", b"100000") in large.stored.headers
    assert (store.object_count, store.bytes_stored) == (2, 105_000)


async def test_survives_a_restart(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await put(store, "http://a.test/x", b"hello")
    await store.aclose()
    again = await open_store(tmp_path)
    [entry] = again.variants("http://a.test/x")
    assert again.memory_body(entry) is None  # memory tier starts empty
    assert await body_of(again, entry) == b"hello"
    assert again.memory_body(entry) == b"hello"  # ... and is filled by a disk hit
    await again.aclose()


async def test_incomplete_body_is_never_stored(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    writer = store.begin("http://a.test/x")
    await writer.write(b"x" * 300_000)  # enough to reach the temporary file
    assert list((tmp_path / "tmp").iterdir())
    writer.abort()
    assert store.variants("http://a.test/x") == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert await writer.commit(stored(), []) is None


async def test_objects_over_the_size_limit_are_not_stored(tmp_path: Path) -> None:
    store = await open_store(tmp_path, max_object_bytes=10_000)
    writer = store.begin("http://a.test/big")
    await writer.write(b"x" * 6000)
    await writer.write(b"x" * 6000)
    assert writer.failed
    assert await writer.commit(stored(), []) is None
    assert store.begin("http://a.test/big", expected_size=20_000).failed


async def test_lru_eviction_keeps_the_cache_within_its_size(tmp_path: Path) -> None:
    store = await open_store(tmp_path, max_bytes=30_000)
    a = await put(store, "http://a.test/a", b"a" * 10_000)
    await put(store, "http://a.test/b", b"b" * 10_000)
    await put(store, "http://a.test/c", b"c" * 10_000)
    store.memory_body(a)  # a is used again: b is now the least recently used
    await put(store, "http://a.test/d", b"d" * 10_000)
    assert [k for k in "abcd" if store.variants(f"http://a.test/{k}")] == ["a", "c", "d"]
    assert store.bytes_stored == 30_000
    assert len([p for p in (tmp_path / "bodies").rglob("*") if p.is_file()]) == 3


async def test_memory_tier_is_bounded(tmp_path: Path) -> None:
    store = await open_store(tmp_path, memory_bytes=20_000)
    entries = [await put(store, f"http://a.test/{i}", bytes([i]) * 8000) for i in range(4)]
    assert store.memory_used <= 20_000
    assert store.memory_body(entries[0]) is None  # the oldest were dropped from memory ...
    assert await body_of(store, entries[0]) == bytes([0]) * 8000  # ... not from disk


async def test_same_variant_replaces_and_vary_variants_coexist(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    gz = stored("Vary: Accept-Encoding", vary_key=((b"accept-encoding", b"gzip"),))
    plain = stored("Vary: Accept-Encoding", vary_key=((b"accept-encoding", None),))
    await put(store, "http://a.test/v", b"1", gz)
    await put(store, "http://a.test/v", b"2", plain)
    assert len(store.variants("http://a.test/v")) == 2
    newer = await put(store, "http://a.test/v", b"3", gz)
    variants = store.variants("http://a.test/v")
    assert len(variants) == 2
    assert newer in variants


async def test_update_and_remove(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    entry = await put(store, "http://a.test/x", b"x")
    updated = await store.update(entry, stored("Cache-Control: max-age=999"))
    assert store.variants("http://a.test/x") == [updated]
    assert await store.remove_keys(["http://a.test/x", "http://a.test/none"]) == 1
    assert store.variants("http://a.test/x") == []
    await store.aclose()
    again = await open_store(tmp_path)
    assert again.variants("http://a.test/x") == []


async def test_recovery_after_an_unclean_stop(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    good = await put(store, "http://a.test/good", b"g" * 100)
    bad = await put(store, "http://a.test/bad", b"b" * 100)
    await store.aclose()
    (tmp_path / "bodies" / f"{bad.id % 256:02x}" / str(bad.id)).write_bytes(b"short")  # torn write
    (tmp_path / "tmp" / "body-leftover").write_bytes(b"partial")
    orphan = tmp_path / "bodies" / "ff" / "99999"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    again = await open_store(tmp_path)
    assert [e.id for e in again.variants("http://a.test/good")] == [good.id]
    assert again.variants("http://a.test/bad") == []
    assert not orphan.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_processes_sharing_a_directory_see_each_others_changes(tmp_path: Path) -> None:
    one = await open_store(tmp_path, shared=1)
    two = await HttpStore.open(
        tmp_path,
        clock=lambda: 0.0,
        max_bytes=10 * KIB * KIB,
        memory_bytes=0,
        memory_object_bytes=0,
        max_object_bytes=KIB * KIB,
        shared=True,
        recover=False,
    )
    entry = await put(one, "http://a.test/x", b"shared")
    await two.refresh()
    [seen] = two.variants("http://a.test/x")
    assert seen.id == entry.id
    assert await body_of(two, seen) == b"shared"
    await one.remove_keys(["http://a.test/x"])
    await two.refresh()
    assert two.variants("http://a.test/x") == []


async def test_a_body_deleted_while_streaming_is_still_read_whole(tmp_path: Path) -> None:
    store = await open_store(tmp_path, memory_object_bytes=0)
    entry = await put(store, "http://a.test/x", b"z" * 700_000)
    chunks = store.read_body(entry)
    first = await chunks.__anext__()
    await store.remove(entry)
    rest = [c async for c in chunks]
    assert len(first) + sum(map(len, rest)) == 700_000


async def test_an_invalidation_drops_a_response_still_being_stored(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    since = store.generation()  # the request begins
    writer = store.begin("http://a.test/x", since=since)
    await writer.write(b"old")
    assert await store.remove_keys(["http://a.test/x"]) == 0  # nothing stored yet ...
    assert await writer.commit(stored("Cache-Control: max-age=60"), []) is None  # ... nor later
    assert store.variants("http://a.test/x") == []
    assert list((tmp_path / "tmp").iterdir()) == []
    # A request that begins after the invalidation stores as usual; other keys are unaffected.
    assert (await put(store, "http://a.test/x", b"new")).size == 3
    other = store.begin("http://a.test/y", since=since)
    await other.write(b"y")
    assert await other.commit(stored("Cache-Control: max-age=60"), []) is not None
    await store.aclose()
    again = await open_store(tmp_path)
    [entry] = again.variants("http://a.test/x")
    assert await body_of(again, entry) == b"new"


async def test_an_invalidation_during_the_index_write_still_wins(tmp_path: Path) -> None:
    class Held(HttpStore):
        gate: trio.Event | None = None

        async def run_blocking(self, fn: Callable[[], T], limiter: trio.CapacityLimiter | None = None) -> T:
            if self.gate is not None:
                await self.gate.wait()
            return await super().run_blocking(fn, limiter)

    store = await Held.open(
        tmp_path, clock=lambda: 1.0, max_bytes=KIB * KIB, memory_bytes=KIB * KIB,
        memory_object_bytes=KIB, max_object_bytes=KIB * KIB,
    )  # fmt: skip
    writer = store.begin("http://a.test/x")
    await writer.write(b"old")
    store.gate = trio.Event()
    results: list[Entry | None] = []
    async with trio.open_nursery() as nursery:

        async def commit() -> None:
            results.append(await writer.commit(stored("Cache-Control: max-age=60"), []))

        nursery.start_soon(commit)
        await trio.testing.wait_all_tasks_blocked()  # the commit has passed its first check
        nursery.start_soon(store.remove_keys, ["http://a.test/x"])
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()  # both go on, in whatever order the scheduler picks
    assert results == [None]
    assert store.variants("http://a.test/x") == []
    await store.aclose()
    again = await open_store(tmp_path)
    assert again.variants("http://a.test/x") == []


async def test_an_invalidation_by_another_process_drops_a_store_in_progress(tmp_path: Path) -> None:
    one = await open_store(tmp_path, shared=1)
    two = await open_store(tmp_path, shared=1)
    await one.refresh()
    writer = one.begin("http://a.test/x", since=one.generation())
    await writer.write(b"old")
    await two.remove_keys(["http://a.test/x"])  # two has never seen x
    assert await writer.commit(stored("Cache-Control: max-age=60"), []) is None
    await one.refresh()
    assert one.variants("http://a.test/x") == []
    # An entry that did land is deleted by another process's invalidation although that process
    # had not seen it: the index deletes by key.
    entry = await put(one, "http://a.test/y", b"y")
    assert await two.remove_keys(["http://a.test/y"]) == 1
    await one.refresh()
    assert one.variants("http://a.test/y") == []
    assert not (tmp_path / "bodies" / f"{entry.id % 256:02x}" / str(entry.id)).exists()
    # After catching up, one stores again.
    await one.refresh()
    assert (await put(one, "http://a.test/x", b"new")).size == 3


def test_invalidation_marks_are_bounded_and_err_on_the_safe_side() -> None:
    marks = Invalidations()
    before = marks.generation(None)
    marks.note(["http://a.test/0"])
    after = marks.generation(None)
    assert marks.since("http://a.test/0", before)
    assert not marks.since("http://a.test/0", after)
    assert not marks.since("http://a.test/1", before)
    marks.note([f"http://a.test/{i}" for i in range(1, MARKS + 1)])  # the marks overflow once
    # Writers older than the overflow cannot be told apart any more: all are stopped.
    assert marks.since("http://a.test/0", after)
    now = marks.generation(None)
    assert not marks.since("http://a.test/0", now)
    marks.note(["http://a.test/0"])
    assert marks.since("http://a.test/0", now)
