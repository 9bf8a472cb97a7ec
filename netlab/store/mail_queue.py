"""The durable outbound queue: mail accepted for other domains, waiting to be relayed.

Layout under ``<store>/queue``: ``<id>.eml`` (the message, LF line ends), ``<id>.json`` (its
envelope and delivery state), and ``tmp/`` for files being written.

Strategy: an entry is committed in two durable steps, message then envelope, each written to
``tmp/``, fsynced and renamed into place with the directory fsynced after.  The envelope is the
commit record: a message without one is an interrupted write (the SMTP client got no 250) and
:meth:`MailQueue.recover` removes it.  Every later change of the envelope (an attempt, a retry
time) replaces it the same way.  An entry leaves the queue only when every recipient is
delivered or bounced: envelope first, so a crash in between leaves a message without an envelope,
never an envelope without its message.  Times are wall-clock seconds (they must survive a
restart); the caller passes them in.

Any number of SMTP servers may add to one queue, but only one relay may work on it, or two would
deliver the same entry and overwrite each other's envelopes: :meth:`MailQueue.try_lock` takes an
``flock`` that the kernel releases when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netlab.store.maildir import fsync_dir, write_durably

__all__ = ["Failure", "MailQueue", "QueueEntry"]


@dataclass
class Failure:
    """A recipient that will not be delivered, for the bounce."""

    recipient: str
    status: str
    diagnostic: str
    remote_mta: str | None = None


@dataclass
class QueueEntry:
    id: str
    sender: str  # "" is the null reverse-path: never bounced
    recipients: list[str]  # still to be delivered
    first_seen: float
    next_try: float
    attempts: int = 0
    last_error: str = ""
    failed: list[Failure] = field(default_factory=list)  # permanent failures, not yet bounced

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> QueueEntry:
        raw = json.loads(data)
        raw["failed"] = [Failure(**f) for f in raw.get("failed", [])]
        return cls(**raw)


class MailQueue:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def create(self) -> None:
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)

    def try_lock(self) -> int | None:
        """The open lock file if this caller may relay from the queue, else None (never waits)."""
        self.create()
        fd = os.open(self.root / "relay.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)  # closing the last descriptor releases the flock

    def add(self, sender: str, recipients: list[str], content: bytes, *, now: float) -> QueueEntry:
        """Queue ``content`` durably for ``recipients`` (blocking)."""
        self.create()
        entry = QueueEntry(
            id=f"{int(now):x}{secrets.token_hex(6)}",
            sender=sender,
            recipients=list(recipients),
            first_seen=now,
            next_try=now,
        )
        write_durably(self.root, self.tmp, f"{entry.id}.eml", content)
        write_durably(self.root, self.tmp, f"{entry.id}.json", entry.to_json())
        return entry

    def save(self, entry: QueueEntry) -> None:
        """Replace the envelope of ``entry`` with its current state (blocking)."""
        tmp = self.tmp / f"{entry.id}.json"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        write_durably(self.root, self.tmp, f"{entry.id}.json", entry.to_json())

    def remove(self, entry_id: str) -> None:
        """Forget an entry: envelope first, then message (blocking)."""
        for suffix in (".json", ".eml"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{_checked(entry_id)}{suffix}").unlink()
        fsync_dir(self.root)

    def read(self, entry_id: str) -> bytes:
        return (self.root / f"{_checked(entry_id)}.eml").read_bytes()

    def entries(self) -> list[QueueEntry]:
        """Every committed entry, oldest first."""
        if not self.root.exists():
            return []
        out = []
        for path in self.root.glob("*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
                out.append(QueueEntry.from_json(path.read_bytes()))
        return sorted(out, key=lambda e: (e.first_seen, e.id))

    def recover(self) -> int:
        """After a crash: drop half-written files; returns how many were dropped."""
        self.create()
        dropped = 0
        for path in self.tmp.iterdir():
            path.unlink()
            dropped += 1
        for path in self.root.glob("*.eml"):
            if not path.with_suffix(".json").exists():
                path.unlink()
                dropped += 1
        if dropped:
            fsync_dir(self.root)
        return dropped


def _checked(entry_id: str) -> str:
    if not entry_id.isalnum():
        raise ValueError(f"bad queue id {entry_id!r}")
    return entry_id
