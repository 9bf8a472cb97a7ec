"""Files that appear whole or not at all.

Strategy: write into a temporary file in the target's own directory (so the final rename never
crosses a file system), ``fsync`` it, then move it into place and ``fsync`` the directory so the
new name survives a crash too.  Until :meth:`AtomicFile.commit`, nothing is visible under the
target name; :meth:`AtomicFile.discard` (or an exception inside ``with``) removes the temporary
file, so a failed transfer leaves nothing behind.

Without ``overwrite`` the move is a hard link, which fails if the name appeared meanwhile (two
uploads racing for one name): the loser gets :class:`FileExistsError` instead of silently
replacing the winner.  Every call blocks; async code runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["AtomicFile"]

FILE_MODE = 0o644  # what a committed file gets (the temporary file is private: 0600)


class AtomicFile:
    """A new version of ``target``, written to a temporary file until :meth:`commit`.

    Raises:
        OSError: the temporary file cannot be created (missing directory, permissions).
    """

    def __init__(self, target: Path, *, overwrite: bool = True) -> None:
        self.target = target
        self.overwrite = overwrite
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        self.temp_path = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self.size = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> None:
        """Make the data durable and visible under the target name.

        Raises:
            FileExistsError: ``overwrite`` is off and the target exists (the data is discarded).
            OSError: the data could not be stored (disk full...); it is discarded.
        """
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self.temp_path, FILE_MODE)
            if self.overwrite:
                os.replace(self.temp_path, self.target)
            else:
                self._link_exclusive()
            _fsync_directory(self.target.parent)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Forget the data (safe to call more than once, and after :meth:`commit`)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def _link_exclusive(self) -> None:
        try:
            os.link(self.temp_path, self.target)
        except FileExistsError:
            raise
        except OSError as exc:
            # A file system without hard links: fall back to check-then-rename (racy, but the
            # only way left).
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            if self.target.exists():
                raise FileExistsError(errno.EEXIST, "File exists", str(self.target)) from exc
            os.replace(self.temp_path, self.target)
            return
        self.temp_path.unlink()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
