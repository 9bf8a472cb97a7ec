"""The on-disk half of the HTTP cache: an SQLite index and one file per stored body.

Strategy: every method here is synchronous and blocking, and is called from a worker thread
(:mod:`netlab.store.http_store` does that); only one thread at a time uses a connection.

Layout of the cache directory::

    index.sqlite            entries (id, key, variant, meta JSON, size, last_used) + a journal
    index.seq               the journal's latest sequence number, 8 bytes, mapped into memory
    bodies/<xx>/<id>        the body of entry <id>; <xx> = id mod 256 in hex, to keep dirs small
    tmp/                    bodies being received; renamed into bodies/ only once complete

A body is written to ``tmp/`` while the response streams, then renamed to its final name in the
same transaction that inserts its row, so the index never names a partial body and a crash leaves
at worst an orphan, which :meth:`DiskIndex.recover` removes (with rows whose file is missing or
has the wrong size) at the next start.  Entry ids come from AUTOINCREMENT and are never reused, so
a file name always means one body.

Several processes may share one cache directory (``--workers``).  Each keeps its own in-memory
view of the index; the ``journal`` table records every insert, update and delete in order, so a
process brings its view up to date by reading the journal past the last sequence number it saw.
It also records invalidations by key (RFC 9111 section 4.4): a commit that was requested before
one of those, in any process, is refused inside its own transaction.  Every transaction that
journals something also writes the journal's latest sequence number to ``index.seq``, which each
process maps into memory: a process learns whether it is behind by reading 8 bytes of memory,
without asking SQLite, before every lookup.  The number is written while the transaction holds
SQLite's write lock, so it only grows; a reader may see it a moment before the rows it announces,
and then simply looks again at its next lookup.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Change", "DiskIndex", "IndexRow"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL,     -- the primary cache key: the target URI
    variant   TEXT NOT NULL,     -- the secondary key (Vary), as JSON
    meta      TEXT NOT NULL,     -- the stored response without its body, as JSON
    size      INTEGER NOT NULL,  -- body bytes
    last_used REAL NOT NULL      -- for LRU eviction
);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (last_used);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id  INTEGER NOT NULL,
    op  TEXT NOT NULL,           -- 'put' (new or updated entry), 'del', or 'inv' (key invalidated)
    key TEXT                     -- for 'inv': the invalidated key (id is then 0)
);
"""

#: Journal rows kept for other processes to catch up with; one that falls further behind reloads.
JOURNAL_KEEP = 10_000


@dataclass(frozen=True)
class IndexRow:
    id: int
    key: str
    variant: str
    meta: dict[str, Any]
    size: int
    last_used: float


@dataclass(frozen=True)
class Change:
    """One journal record: entry ``id`` was inserted or updated (``row``), or deleted (None).

    An invalidation record (``invalidation``) changes no entry by itself (the deletions it caused
    have records of their own); it only moves the journal position on.
    """

    seq: int
    id: int
    row: IndexRow | None
    invalidation: bool = False


class DiskIndex:
    """The SQLite index and body files of one cache directory (blocking; use from a thread)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bodies = directory / "bodies"
        self.tmp = directory / "tmp"
        for d in (directory, self.bodies, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "index.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        # WAL lets readers in other processes go on while one writes; NORMAL synchronisation does
        # not fsync every commit: after a power cut the index may lose its latest entries, which
        # for a cache only means a few misses (recover() removes what no row names).
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(journal)")}
        if "key" not in columns:  # a cache directory from before invalidations were journalled
            self._db.execute("ALTER TABLE journal ADD COLUMN key TEXT")
        self._journalled = False  # by the transaction in progress
        fd = os.open(directory / "index.seq", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._seq_map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        # An aligned 8-byte item: read and written whole (one machine word) by every process.
        self._published = memoryview(self._seq_map).cast("Q")

    def close(self) -> None:
        self._db.close()
        self._published.release()
        self._seq_map.close()

    def published_seq(self) -> int:
        """The journal's latest sequence number, as the last writer (of any process) published it.

        Cheap (a memory read) and safe to call from any thread.
        """
        return int(self._published[0])

    def body_path(self, entry_id: int) -> Path:
        return self.bodies / f"{entry_id % 256:02x}" / str(entry_id)

    def recover(self) -> int:
        """Make the index and the files agree after an unclean stop; returns rows dropped.

        Only one process may run this, before any other opens the directory.
        """
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        known: dict[Path, int] = {}
        dropped = []
        for entry_id, size in self._db.execute("SELECT id, size FROM entries").fetchall():
            path = self.body_path(entry_id)
            try:
                ok = path.stat().st_size == size
            except FileNotFoundError:
                ok = False
            if ok:
                known[path] = entry_id
            else:
                dropped.append(entry_id)
        with self._transaction():
            for entry_id in dropped:
                self._delete(entry_id)
        for sub in self.bodies.iterdir():
            for path in sub.iterdir():
                if path not in known:
                    path.unlink(missing_ok=True)
        if dropped:
            log.warning("cache index: dropped %d entries whose body was missing or incomplete", len(dropped))
        return len(dropped)

    def load(self) -> tuple[list[IndexRow], int]:
        """Every entry, and the journal position they reflect."""
        with self._transaction():
            rows = [self._row(r) for r in self._db.execute("SELECT * FROM entries ORDER BY last_used")]
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]
        return rows, int(seq)

    def changes_since(self, seq: int) -> list[Change] | None:
        """Journal records after ``seq``, with current rows; None if the journal was trimmed past it."""
        with self._transaction():
            first = self._db.execute("SELECT MIN(seq) FROM journal").fetchone()[0]
            if first is not None and first > seq + 1:
                return None
            out = []
            for s, entry_id, op in self._db.execute(
                "SELECT seq, id, op FROM journal WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall():
                row = None
                if op == "put":
                    found = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
                    row = self._row(found) if found else None
                out.append(Change(s, entry_id, row, invalidation=op == "inv"))
            return out

    def commit(
        self,
        *,
        tmp_path: Path,
        key: str,
        variant: str,
        meta: dict[str, Any],
        size: int,
        now: float,
        replaces: list[int],
        touched: dict[int, float],
        max_bytes: int,
        unless_invalidated_after: int | None = None,
    ) -> tuple[IndexRow | None, list[int]]:
        """Insert a complete body as a new entry; returns it and the ids deleted on the way.

        Deleted are: the entries it replaces (``replaces``, and any with the same key and
        variant), then the least recently used entries until the cache fits ``max_bytes``.
        ``touched`` carries last-use times noted in memory since the last commit.

        With ``unless_invalidated_after`` (a journal position), nothing is inserted (the row is
        None and the body file deleted) if ``key`` was invalidated after it, by any process:
        the response was requested before the unsafe request changed the resource (RFC 9111
        section 4.4).  A journal trimmed past that position counts as such an invalidation.
        """
        deleted: list[int] = []
        with self._transaction():
            if unless_invalidated_after is not None and self._invalidated_after(
                key, unless_invalidated_after
            ):
                tmp_path.unlink(missing_ok=True)
                return None, []
            self._record_use(touched)
            same = self._db.execute(
                "SELECT id FROM entries WHERE key = ? AND variant = ?", (key, variant)
            ).fetchall()
            for entry_id in {*replaces, *(r[0] for r in same)}:
                if self._delete(entry_id):
                    deleted.append(entry_id)
            cursor = self._db.execute(
                "INSERT INTO entries (key, variant, meta, size, last_used) VALUES (?, ?, ?, ?, ?)",
                (key, variant, json.dumps(meta), size, now),
            )
            new_id = int(cursor.lastrowid or 0)
            final = self.body_path(new_id)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_path, final)
            self._journal(new_id, "put")
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if total > max_bytes:
                for entry_id, entry_size in self._db.execute(
                    "SELECT id, size FROM entries WHERE id != ? ORDER BY last_used", (new_id,)
                ).fetchall():
                    if total <= max_bytes:
                        break
                    self._delete(entry_id)
                    deleted.append(entry_id)
                    total -= entry_size
            self._trim_journal()
        row = IndexRow(new_id, key, variant, meta, size, now)
        return row, deleted

    def update_meta(self, entry_id: int, meta: dict[str, Any]) -> bool:
        """Replace an entry's metadata (after a 304); False if it is gone."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE entries SET meta = ? WHERE id = ?", (json.dumps(meta), entry_id)
            )
            if cursor.rowcount:
                self._journal(entry_id, "put")
            return bool(cursor.rowcount)

    def delete(self, entry_ids: list[int]) -> None:
        with self._transaction():
            for entry_id in entry_ids:
                self._delete(entry_id)

    def invalidate(self, keys: list[str]) -> list[int]:
        """Delete every entry stored under ``keys`` and journal the invalidation; the ids deleted.

        By key, not by the ids one process knows: entries another process stored meanwhile go too.
        """
        deleted: list[int] = []
        with self._transaction():
            for key in keys:
                for (entry_id,) in self._db.execute(
                    "SELECT id FROM entries WHERE key = ?", (key,)
                ).fetchall():
                    if self._delete(entry_id):
                        deleted.append(entry_id)
                self._db.execute("INSERT INTO journal (id, op, key) VALUES (0, 'inv', ?)", (key,))
                self._journalled = True
        return deleted

    def touch(self, touched: dict[int, float]) -> None:
        """Record last-use times (not journalled: they only steer eviction)."""
        with self._transaction():
            self._record_use(touched)

    def read_body(self, entry_id: int, offset: int, size: int) -> bytes:
        """``size`` bytes of a body from ``offset``.

        Raises:
            FileNotFoundError: the entry was deleted meanwhile (perhaps by another process).
        """
        with open(self.body_path(entry_id), "rb") as f:
            f.seek(offset)
            return f.read(size)

    # -- internals ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _delete(self, entry_id: int) -> bool:
        cursor = self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        if not cursor.rowcount:
            return False
        self._journal(entry_id, "del")
        # Unlinking is safe while another task or process reads the file: it keeps its open
        # descriptor; one that has not opened it yet sees FileNotFoundError and treats it as a miss.
        self.body_path(entry_id).unlink(missing_ok=True)
        return True

    def _invalidated_after(self, key: str, seq: int) -> bool:
        first = self._db.execute("SELECT MIN(seq) FROM journal").fetchone()[0]
        if first is not None and first > seq + 1:
            return True  # trimmed: what happened after ``seq`` is no longer known
        found = self._db.execute(
            "SELECT 1 FROM journal WHERE seq > ? AND op = 'inv' AND key = ? LIMIT 1", (seq, key)
        ).fetchone()
        return found is not None

    def _journal(self, entry_id: int, op: str) -> None:
        self._db.execute("INSERT INTO journal (id, op) VALUES (?, ?)", (entry_id, op))
        self._journalled = True

    def _publish(self) -> None:
        """Announce the journal's new end (in the transaction, under SQLite's write lock)."""
        if self._journalled:
            self._journalled = False
            self._published[0] = int(self._db.execute("SELECT MAX(seq) FROM journal").fetchone()[0])

    def _record_use(self, touched: dict[int, float]) -> None:
        rows = [(t, i) for i, t in touched.items()]
        self._db.executemany("UPDATE entries SET last_used = ? WHERE id = ?", rows)

    def _trim_journal(self) -> None:
        self._db.execute(
            "DELETE FROM journal WHERE seq <= (SELECT MAX(seq) FROM journal) - ?", (JOURNAL_KEEP,)
        )

    @staticmethod
    def _row(r: tuple[Any, ...]) -> IndexRow:
        return IndexRow(int(r[0]), r[1], r[2], json.loads(r[3]), int(r[4]), float(r[5]))


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ROLLBACK on error): one writer at a time."""

    def __init__(self, index: DiskIndex) -> None:
        self._index = index

    def __enter__(self) -> None:
        self._index._journalled = False
        self._index._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._index._publish()
            self._index._db.execute("COMMIT")
        else:
            self._index._journalled = False
            self._index._db.execute("ROLLBACK")
