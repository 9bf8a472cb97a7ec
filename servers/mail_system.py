"""The mail store as the SMTP server, the relay and the POP3 server use it, from trio.

Strategy: one :class:`MailSystem` per process wraps the blocking store (Maildirs, users file,
outbound queue) in worker threads (:meth:`MailSystem.run_blocking`), and holds the one rule every entry point
shares: a message is accepted only when every copy of it is durably stored (the local recipients'
Maildirs and, for other domains, the queue), and not at all otherwise.  If one copy fails, the
copies already written are removed again, so the client's retry cannot cause duplicates.  The
messages that sessions hand over at the same time are stored together, in one worker-thread call
with one fsync per directory (group commit: :mod:`netlab.aio.group_commit`,
:mod:`netlab.store.mail_batch`).

Driver tests run under trio's ``autojump_clock``, which would jump virtual time while a worker
thread runs; they build the system with ``threads=False`` so blocking calls run inline.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import argon2
import trio

from netlab.aio.group_commit import GroupCommit
from netlab.store.mail_batch import Delivery, store_batch
from netlab.store.mail_queue import MailQueue, QueueEntry
from netlab.store.maildir import MailStore, normalize_address
from netlab.store.maildrop_lock import MaildropLocks
from netlab.store.users import UserDb, UserRecord

__all__ = ["MailSystem", "new_message_id"]

log = logging.getLogger(__name__)

#: Password hashes computed at once (each argon2 verification holds 19 MiB for ~30 ms).
MAX_VERIFYING = 4
#: Worker threads for store calls, and the most batches of messages committed at once (on a slow
#: disk; on a fast one a single batch at a time keeps up).  A few are enough for fsyncs to overlap;
#: many more only make them fight over the GIL (every system call releases and retakes it).
STORE_THREADS = 8

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


_ID_BASE = secrets.randbits(40)
_ID_COUNTER = itertools.count()


def new_message_id() -> str:
    """A short unique id for a message in logs, replies and Received: headers.

    A random per-process start plus a counter: unique and unpredictable enough for a trace id,
    without a getrandom() system call per message.
    """
    return f"{(_ID_BASE + next(_ID_COUNTER)) % (1 << 48):012X}"


class MailSystem:
    """The store at ``root`` for the local ``domains``.

    Args:
        clock: wall-clock seconds for the queue's times (tests pass a virtual clock).
        hasher: argon2 parameters for new passwords (tests pass cheap ones).
        threads: run blocking store calls in worker threads (False: inline, for tests).
    """

    def __init__(
        self,
        root: Path,
        domains: Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
        hasher: argon2.PasswordHasher | None = None,
        threads: bool = True,
    ) -> None:
        self.root = root
        self.store = MailStore(root)
        self.users = UserDb(root / "users", hasher=hasher)
        self.queue = MailQueue(root / "queue")
        self.locks = MaildropLocks()
        self.domains = frozenset(d.lower().rstrip(".") for d in domains)
        self.clock = clock
        self.threads = threads
        self._verifying = trio.CapacityLimiter(MAX_VERIFYING)
        self._store_threads = trio.CapacityLimiter(STORE_THREADS)
        self._commits: GroupCommit[Delivery, QueueEntry | None] = GroupCommit(
            partial(store_batch, queue=self.queue), self.run_blocking, max_parallel=STORE_THREADS
        )
        self.store.create()
        #: Set whenever something new is queued; the relay waits on it.
        self.queued = trio.Event()

    async def run_blocking(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in a worker thread (where fsyncs of concurrent sessions overlap)."""
        if self.threads:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._store_threads)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    def is_local(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self.domains

    def local_user(self, address: str) -> str | None:
        """The stored key of a local recipient, or None if there is no such user.

        A bare "postmaster" (RFC 5321 section 4.1.1.3) is the postmaster of the first domain.
        """
        if address.lower() == "postmaster" and self.domains:
            address = f"postmaster@{sorted(self.domains)[0]}"
        record = self.users.get(address)
        return record.address if record else None

    async def verify(self, address: str, password: str) -> UserRecord | None:
        """The user if the password is right (argon2 runs in a worker thread).

        At most :data:`MAX_VERIFYING` hashes are computed at once, so a flood of logins costs
        bounded memory and CPU; the rest wait their turn.
        """
        async with self._verifying:
            return await self.run_blocking(self.users.verify, address, password)

    async def accept(self, sender: str, recipients: list[str], content: bytes) -> None:
        """Store ``content`` (LF line ends) for every recipient, or for none of them.

        Local recipients (already resolved with :meth:`local_user`) get a Maildir copy; the rest
        go to the outbound queue as one entry.  The message is committed together with whatever
        other sessions are storing at the same moment (:mod:`netlab.aio.group_commit`).

        Raises:
            OSError: a copy could not be stored; nothing of this message remains.
        """
        local = dict.fromkeys(normalize_address(r) for r in recipients if self.is_local(r))
        remote = tuple(dict.fromkeys(r for r in recipients if not self.is_local(r)))
        maildirs = tuple(self.store.maildir(r) for r in local)
        entry = await self._commits.submit(Delivery(sender, maildirs, remote, content, self.clock()))
        if entry is not None:
            log.info("queued %s for %d remote recipient(s)", entry.id, len(remote))
            self.queued.set()

    def take_queued_signal(self) -> trio.Event:
        """The event to wait on for the next queued message (resetting the current one)."""
        if self.queued.is_set():
            self.queued = trio.Event()
        return self.queued

    async def entries(self) -> list[QueueEntry]:
        return await self.run_blocking(self.queue.entries)
