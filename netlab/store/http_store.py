"""The HTTP cache store: a disk tier that survives restarts and a memory tier for small hot bodies.

Strategy: lookups are synchronous dictionary reads on an in-memory view of the index, because
they happen for every request; everything that touches the disk (body files, the SQLite index in
:mod:`netlab.store.http_index`) runs in worker threads, index work one operation at a time.

* A response is stored through a :class:`BodyWriter` while it streams to the client (a tee): its
  chunks go to a temporary file in batches, and only :meth:`BodyWriter.commit`, called once the
  whole body has arrived, makes it an entry.  An aborted or incomplete response leaves nothing.
* The disk tier is bounded by ``max_bytes``: a commit evicts the least recently used entries.
* Bodies up to ``memory_object_bytes`` are also kept in memory (up to ``memory_bytes`` in all,
  least recently used dropped first), so a hot small object is served without a thread hop.
* With several processes on one directory (``shared=True``), a lookup first applies the changes
  the others have journalled (:meth:`HttpStore.refresh`), so an invalidation by one is seen by all.
* An invalidation (RFC 9111 section 4.4) also stops responses that are still on their way into
  the store: a request takes its :class:`~netlab.store.http_generation.Generation` when it
  begins, and a commit for a key invalidated since then is dropped.  In this process the check is
  a dictionary lookup before and after the index write; across processes the index checks its
  journal inside the commit's transaction.  So a response requested before an unsafe request
  never lands after it.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

import trio

from netlab.proto.http_stored import StoredResponse
from netlab.store.http_generation import Generation, Invalidations
from netlab.store.http_index import Change, DiskIndex, IndexRow
from netlab.store.http_writer import BodyWriter

__all__ = ["BodyGone", "Entry", "HttpStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_CHUNK = 256 * 1024  # bytes per read of a body from disk


class BodyGone(Exception):
    """The entry's body vanished (evicted or invalidated, maybe by another process): a miss."""


@dataclass(frozen=True)
class Entry:
    """One stored response: ``key`` is the target URI, ``variant`` its Vary secondary key."""

    id: int
    key: str
    variant: str
    stored: StoredResponse
    size: int


class HttpStore:
    """The cache's storage; create with :meth:`open`, close with :meth:`aclose`."""

    def __init__(
        self,
        index: DiskIndex,
        *,
        clock: Callable[[], float],
        max_bytes: int,
        memory_bytes: int,
        memory_object_bytes: int,
        max_object_bytes: int,
        shared: bool = False,
        threads: bool = True,
    ) -> None:
        self._index = index
        self._threads = threads
        self._clock = clock
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.memory_object_bytes = memory_object_bytes
        self.max_object_bytes = max_object_bytes
        self._db_lock = trio.CapacityLimiter(1)  # one index operation at a time
        self._by_key: dict[str, list[Entry]] = {}
        self._by_id: dict[int, Entry] = {}
        self._bytes = 0
        self._memory: OrderedDict[int, bytes] = OrderedDict()
        self._memory_used = 0
        self._touched: dict[int, float] = {}
        self._seq = 0
        self._invalidations = Invalidations()
        self.shared = shared

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        clock: Callable[[], float],
        max_bytes: int,
        memory_bytes: int,
        memory_object_bytes: int,
        max_object_bytes: int,
        shared: bool = False,
        recover: bool = True,
        threads: bool = True,
    ) -> Self:
        """Open (creating if needed) the cache in ``directory`` and load its index.

        ``recover`` cleans up after an unclean stop; with several processes only the first may.
        ``threads=False`` does the disk work inline instead of in worker threads: for tests in
        virtual time, where a task waiting for a thread would let the mock clock run ahead.
        """

        def _open() -> tuple[DiskIndex, list[IndexRow], int]:
            index = DiskIndex(directory)
            if recover:
                index.recover()
            rows, seq = index.load()
            return index, rows, seq

        index, rows, seq = await trio.to_thread.run_sync(_open) if threads else _open()
        store = cls(
            index,
            clock=clock,
            max_bytes=max_bytes,
            memory_bytes=memory_bytes,
            memory_object_bytes=memory_object_bytes,
            max_object_bytes=max_object_bytes,
            shared=shared,
            threads=threads,
        )
        store._reload(rows, seq)
        log.info("cache %s: %d objects, %d bytes", directory, len(store._by_id), store._bytes)
        return store

    async def aclose(self) -> None:
        touched, self._touched = self._touched, {}

        def _close() -> None:
            self._index.touch(touched)
            self._index.close()

        await self._db(_close)

    # -- reading -------------------------------------------------------------------------------

    def variants(self, key: str) -> list[Entry]:
        """The stored responses for a target URI (one per Vary variant)."""
        return self._by_key.get(key, [])

    def memory_body(self, entry: Entry, now: float | None = None) -> bytes | None:
        """The body if it is in the memory tier (and marks the entry used, ``now`` if given)."""
        self._touched[entry.id] = self._clock() if now is None else now
        body = self._memory.get(entry.id)
        if body is not None:
            self._memory.move_to_end(entry.id)
        return body

    async def read_body(self, entry: Entry) -> AsyncGenerator[bytes, None]:
        """The body from disk, in chunks; a small one is promoted to the memory tier.

        Raises:
            BodyGone: the file was deleted before it could be opened.
        """
        self._touched[entry.id] = self._clock()
        if entry.size <= self.memory_object_bytes:
            try:
                body = await self.run_blocking(lambda: self._index.read_body(entry.id, 0, entry.size))
            except FileNotFoundError as exc:
                self._forget([entry.id])
                raise BodyGone(entry.key) from exc
            if entry.id in self._by_id:
                self._remember(entry.id, body)
            yield body
            return
        path = self._index.body_path(entry.id)
        try:
            f = await self.run_blocking(lambda: open(path, "rb"))  # noqa: SIM115 (closed below)
        except FileNotFoundError as exc:
            self._forget([entry.id])
            raise BodyGone(entry.key) from exc
        try:
            while chunk := await self.run_blocking(lambda: f.read(READ_CHUNK)):
                yield chunk
        finally:
            f.close()

    async def refresh(self) -> None:
        """Apply what other processes changed since we last looked (only when ``shared``)."""
        if not self.shared or self._index.published_seq() <= self._seq:
            return  # the usual case, found out without a thread or a query
        changes = await self._db(lambda: self._index.changes_since(self._seq))
        if changes is None:
            rows, seq = await self._db(self._index.load)
            self._reload(rows, seq)
            return
        self._apply(changes)

    # -- writing -------------------------------------------------------------------------------

    def generation(self) -> Generation:
        """The store's generation now: take it when a request begins, before the origin is asked.

        For a shared store, call :meth:`refresh` first, so that the journal position is current.
        """
        return self._invalidations.generation(self._seq if self.shared else None)

    def begin(
        self, key: str, expected_size: int | None = None, *, since: Generation | None = None
    ) -> BodyWriter:
        """A writer for a response to ``key`` that is about to stream.

        ``since`` is the generation taken when the request began (by default: now); the response
        is not stored if ``key`` is invalidated after it (RFC 9111 section 4.4).
        """
        return BodyWriter(self, key, expected_size, self.generation() if since is None else since)

    async def update(self, entry: Entry, stored: StoredResponse) -> Entry:
        """Replace an entry's metadata, as after a 304 (RFC 9111 section 4.3.4)."""
        updated = Entry(entry.id, entry.key, entry.variant, stored, entry.size)
        if entry.id in self._by_id:
            self._put(updated)
        await self._db(lambda: self._index.update_meta(entry.id, stored.to_json()))
        return updated

    async def remove_keys(self, keys: list[str]) -> int:
        """Invalidate ``keys`` (RFC 9111 section 4.4): every variant stored for them is deleted,
        and responses to them still being stored will not be; returns how many were deleted."""
        self._invalidations.note(keys)
        # At once, so that no request served from now on sees them ...
        self._forget([e.id for key in keys for e in self._by_key.get(key, [])])
        # ... and in the index by key, which also removes what other processes stored.
        deleted = await self._db(lambda: self._index.invalidate(keys))
        self._forget(deleted)
        return len(deleted)

    async def remove(self, entry: Entry) -> None:
        self._forget([entry.id])
        await self._db(lambda: self._index.delete([entry.id]))

    @property
    def directory(self) -> Path:
        """The cache directory."""
        return self._index.directory

    @property
    def tmp_dir(self) -> Path:
        """Where bodies being received are written before they are committed."""
        return self._index.tmp

    # -- statistics ----------------------------------------------------------------------------

    @property
    def object_count(self) -> int:
        return len(self._by_id)

    @property
    def bytes_stored(self) -> int:
        return self._bytes

    @property
    def memory_used(self) -> int:
        return self._memory_used

    def largest(self, n: int) -> list[Entry]:
        return heapq.nlargest(n, self._by_id.values(), key=lambda e: e.size)

    # -- internals -----------------------------------------------------------------------------

    async def _db(self, fn: Callable[[], T]) -> T:
        """Run index work in a thread, one operation at a time."""
        return await self.run_blocking(fn, limiter=self._db_lock)

    async def run_blocking(self, fn: Callable[[], T], limiter: trio.CapacityLimiter | None = None) -> T:
        """Run blocking disk work in a worker thread (or inline, see :meth:`open`)."""
        if self._threads:
            return await trio.to_thread.run_sync(fn, limiter=limiter)
        await trio.lowlevel.checkpoint()
        return fn()

    def _entry(self, row: IndexRow) -> Entry:
        return Entry(row.id, row.key, row.variant, StoredResponse.from_json(row.meta), row.size)

    def _reload(self, rows: list[IndexRow], seq: int) -> None:
        self._by_key.clear()
        self._by_id.clear()
        self._bytes = 0
        for row in rows:
            self._put(self._entry(row))
        for stale in [i for i in self._memory if i not in self._by_id]:
            self._memory_used -= len(self._memory.pop(stale))
        self._seq = seq

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if change.invalidation:
                pass  # its deletions are records of their own; commits check it in the index
            elif change.row is None:
                self._forget([change.id])
            else:
                self._put(self._entry(change.row))
            self._seq = change.seq

    def _put(self, entry: Entry) -> None:
        old = self._by_id.get(entry.id)
        if old is not None:
            self._by_key[old.key] = [e for e in self._by_key[old.key] if e.id != entry.id]
            self._bytes -= old.size
        self._by_id[entry.id] = entry
        self._by_key.setdefault(entry.key, []).append(entry)
        self._bytes += entry.size

    def _forget(self, ids: list[int]) -> None:
        for entry_id in ids:
            entry = self._by_id.pop(entry_id, None)
            if entry is not None:
                remaining = [e for e in self._by_key.get(entry.key, []) if e.id != entry_id]
                if remaining:
                    self._by_key[entry.key] = remaining
                else:
                    self._by_key.pop(entry.key, None)
                self._bytes -= entry.size
            body = self._memory.pop(entry_id, None)
            if body is not None:
                self._memory_used -= len(body)
            self._touched.pop(entry_id, None)

    def _remember(self, entry_id: int, body: bytes) -> None:
        """Put a body in the memory tier, dropping the least recently used to make room."""
        if len(body) > self.memory_object_bytes or len(body) > self.memory_bytes:
            return
        while self._memory_used + len(body) > self.memory_bytes and self._memory:
            _, dropped = self._memory.popitem(last=False)
            self._memory_used -= len(dropped)
        self._memory[entry_id] = body
        self._memory_used += len(body)

    async def commit_body(
        self, writer: BodyWriter, stored: StoredResponse, replaces: list[int], tmp: Path, memory: bytes | None
    ) -> Entry | None:
        """Make a complete body (in the temporary file ``tmp``) an entry: :meth:`BodyWriter.commit`.

        Returns None, storing nothing, if the key was invalidated since the writer's generation.
        """
        if self._invalidations.since(writer.key, writer.since):
            log.debug("not storing %s: invalidated while it was received", writer.key)
            await self.run_blocking(lambda: tmp.unlink(missing_ok=True))
            return None
        touched, self._touched = self._touched, {}
        variant = json.dumps(stored.to_json()["vary_key"])
        now = self._clock()
        row, deleted = await self._db(
            lambda: self._index.commit(
                tmp_path=tmp,
                key=writer.key,
                variant=variant,
                meta=stored.to_json(),
                size=writer.size,
                now=now,
                replaces=replaces,
                touched=touched,
                max_bytes=self.max_bytes,
                unless_invalidated_after=writer.since.journal,
            )
        )
        self._forget(deleted)
        if row is None:
            log.debug("not storing %s: another process invalidated it meanwhile", writer.key)
            return None
        if self._invalidations.since(writer.key, writer.since):
            # Invalidated here while the index write was under way: whichever of the two reached
            # the index first, the entry must go (deleting it twice is harmless).
            row_id = row.id
            await self._db(lambda: self._index.delete([row_id]))
            return None
        entry = Entry(row.id, row.key, row.variant, stored, row.size)
        self._put(entry)
        if memory is not None:
            self._remember(entry.id, memory)
        return entry
