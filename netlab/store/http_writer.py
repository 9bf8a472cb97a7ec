"""Writing one response body into the cache while it streams to the client (the tee).

Strategy: chunks are gathered in memory and written to a temporary file in batches of
``WRITE_BATCH`` bytes by a worker thread, so memory stays bounded however large the body; the
body only becomes a cache entry in :meth:`BodyWriter.commit`, which the caller invokes once the
whole response has arrived.  An aborted writer deletes its temporary file: an incomplete response
is never stored.  Small bodies are also kept whole (the very bytes objects that were sent, no copy)
for the store's memory tier.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from netlab.proto.http_stored import StoredResponse

if TYPE_CHECKING:
    from netlab.store.http_generation import Generation
    from netlab.store.http_store import Entry, HttpStore

__all__ = ["WRITE_BATCH", "BodyWriter"]

log = logging.getLogger(__name__)

WRITE_BATCH = 256 * 1024  # bytes gathered before a write to the temporary file


class BodyWriter:
    """Stores one response body as it streams; nothing is stored until :meth:`commit`.

    It gives up (quietly: the client's stream goes on) when the body grows past the store's
    ``max_object_bytes`` or the disk fails; :attr:`failed` then says so.
    """

    def __init__(self, store: HttpStore, key: str, expected_size: int | None, since: Generation) -> None:
        self._store = store
        self.key = key
        self.since = since  # the store's generation when the request began
        self.size = 0
        self.failed = expected_size is not None and expected_size > store.max_object_bytes
        self._pending: list[bytes] = []
        self._pending_size = 0
        # The whole body, while it is small enough for the memory tier: the same bytes objects
        # that were sent to the client, so keeping them costs no copy.
        self._whole: list[bytes] | None = []
        self._fd: int | None = None
        self._path: Path | None = None

    async def write(self, data: bytes) -> None:
        if self.failed or not data:
            return
        self.size += len(data)
        if self.size > self._store.max_object_bytes:
            log.debug("not storing %s: larger than %d bytes", self.key, self._store.max_object_bytes)
            self.abort()
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._whole is not None:
            if self.size <= self._store.memory_object_bytes:
                self._whole.append(data)
            else:
                self._whole = None
        if self._pending_size >= WRITE_BATCH:
            await self._flush()

    async def commit(self, stored: StoredResponse, replaces: list[int]) -> Entry | None:
        """Make the complete body an entry with metadata ``stored``; None if storing failed or
        the key was invalidated after the request began."""
        await self._flush()
        if self.failed or self._fd is None or self._path is None:
            return None
        fd, path = self._fd, self._path
        whole = b"".join(self._whole) if self._whole is not None else None
        self._fd = self._path = None
        self.failed = True  # this writer is finished either way
        try:
            await self._store.run_blocking(lambda: os.close(fd))
            return await self._store.commit_body(
                self, _with_content_length(stored, self.size), replaces, path, whole
            )
        except OSError as exc:
            log.warning("could not store %s: %s", self.key, exc)
            path.unlink(missing_ok=True)
            return None

    def abort(self) -> None:
        """Forget the body.  Synchronous so that it can run while the task is being cancelled."""
        self.failed = True
        self._pending.clear()
        self._whole = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    async def _flush(self) -> None:
        if self.failed:
            return
        chunks, self._pending, self._pending_size = self._pending, [], 0
        if self._fd is None:
            self._fd, self._path = await self._store.run_blocking(self._create)
        fd = self._fd
        assert fd is not None  # set just above, or by an earlier flush
        try:
            await self._store.run_blocking(lambda: _write_all(fd, chunks))
        except OSError as exc:
            log.warning("could not store %s: %s", self.key, exc)
            self.abort()

    def _create(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self._store.tmp_dir, prefix="body-")
        return fd, Path(name)


def _write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _with_content_length(stored: StoredResponse, size: int) -> StoredResponse:
    """The stored headers always frame the stored body with Content-Length."""
    headers: list[tuple[bytes, bytes]] = [(n, v) for n, v in stored.headers if n.lower() != b"content-length"]
    headers.append((b"Content-Length", str(size).encode()))
    return stored.with_headers(headers, request_time=stored.request_time, response_time=stored.response_time)
