"""Exclusive access to a maildrop for one POP3 session (RFC 1939 section 8).

Strategy: two layers.  An in-process table answers quickly and without a system call when a
second session of the same server asks for a maildrop that is in use; an ``flock`` on a lock
file inside the Maildir makes two processes (two ``netlab pop3d``, or ``netlab up`` and a
``netlab pop3d``) agree as well.  Locks are never waited for: a busy maildrop is answered at
once with ``-ERR [IN-USE]`` (RFC 2449 section 8.1.1).  The kernel drops an ``flock`` when its
process dies, so a crashed server leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["MaildropLock", "MaildropLocks"]

LOCK_NAME = "netlab-pop3.lock"


class MaildropLock:
    """A held lock; release it exactly once (it is a context manager too)."""

    def __init__(self, table: MaildropLocks, key: str, fd: int) -> None:
        self._table = table
        self._key = key
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        self._table.held.discard(self._key)

    def __enter__(self) -> MaildropLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MaildropLocks:
    """The locks this process holds, by Maildir path."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    def try_acquire(self, maildir: Path) -> MaildropLock | None:
        """The lock of ``maildir``, or None if any session of any process holds it."""
        key = str(maildir.resolve())
        if key in self.held:
            return None
        maildir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(maildir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        self.held.add(key)
        return MaildropLock(self, key, fd)
