"""A file being received: nothing is visible until it is complete and durable.

Strategy: bytes go to a hidden temporary file (``.rdt-*.part``) in the destination directory, so
the final step is a same-filesystem link, never a copy.  :meth:`IncomingFile.commit` fsyncs the
data, hard-links the temporary file under its final name, removes the temporary name and fsyncs
the directory: after it returns the file survives a crash, and it appeared all at once.  ``link``
fails if the name exists, which is how "never overwrite" is enforced without a race between a
check and a rename (``rename`` would silently replace).  :meth:`IncomingFile.discard` removes the
temporary file, so an interrupted transfer leaves nothing behind.

Writes are buffered and handed to a worker thread a megabyte at a time, with the SHA-256 updated
there too (hashlib releases the GIL on large buffers), so the event loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import trio

__all__ = ["IncomingFile", "NameTaken"]

FLUSH_BYTES = 1 << 20  # buffer this much before a worker thread writes it
MAX_VARIANTS = 1000  # "name-1.ext" ... "name-999.ext" before giving up


def _current_umask() -> int:
    # The only way to read the umask is to set it; done once, at import, before any threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class NameTaken(FileExistsError):
    """Every name the file could be stored under already exists."""


class IncomingFile:
    """A hidden temporary file in ``directory``; use :meth:`create`."""

    def __init__(self, directory: Path, fd: int, temp: Path) -> None:
        self.directory = directory
        self._fd = fd
        self._temp = temp
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    @classmethod
    async def create(cls, directory: Path) -> IncomingFile:
        """Open a new temporary file in ``directory`` (which must exist).

        Raises:
            OSError: the directory is missing or not writable.
        """
        fd, name = await trio.to_thread.run_sync(
            lambda: tempfile.mkstemp(prefix=".rdt-", suffix=".part", dir=directory)
        )
        return cls(directory, fd, Path(name))

    @property
    def sha256(self) -> str:
        """The hex digest of everything written so far (complete once committed)."""
        return self._hash.hexdigest()

    async def write(self, data: bytes) -> None:
        """Append ``data`` (buffered; a full buffer goes to disk in a worker thread)."""
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        chunk, self._buffer = bytes(self._buffer), bytearray()
        if chunk:
            await trio.to_thread.run_sync(self._write_all, chunk)

    def _write_all(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    async def commit(self, name: str, *, unique: bool = True) -> Path:
        """Make the file durable and visible as ``directory/name``.

        Args:
            name: a single, already sanitised file name.
            unique: if the name is taken, use ``stem-1.ext``, ``stem-2.ext``, ...; otherwise fail.

        Raises:
            NameTaken: the name (and every variant, when ``unique``) exists.
            OSError: writing, syncing or linking failed; the temporary file is still there for
                :meth:`discard`.
        """
        await self._flush()
        path = await trio.to_thread.run_sync(self._sync_and_link, name, unique)
        self._done = True
        return path

    def _sync_and_link(self, name: str, unique: bool) -> Path:
        # mkstemp makes the file private (0600); a received file gets the usual 0666 & ~umask.
        os.fchmod(self._fd, 0o666 & ~_UMASK)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        for candidate in _variants(name, MAX_VARIANTS if unique else 1):
            target = self.directory / candidate
            try:
                os.link(self._temp, target)
            except FileExistsError:
                continue
            os.unlink(self._temp)
            _fsync_directory(self.directory)
            return target
        raise NameTaken(f"{self.directory / name} already exists")

    def discard(self) -> None:
        """Remove the temporary file (nothing was committed); safe to call more than once."""
        if self._done:
            return
        self._done = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


def _variants(name: str, count: int) -> Iterator[str]:
    yield name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or only a leading dot, which sanitised names never have)
        stem, dot, ext = name, "", ""
    for i in range(1, count):
        yield f"{stem}-{i}{dot}{ext}"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
