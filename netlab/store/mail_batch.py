"""Storing a batch of accepted messages at once: each one all or nothing, the fsyncs of ``new/`` shared.

Strategy: the SMTP server commits the messages its sessions accepted in batches (see
``netlab.aio.group_commit``); :func:`store_batch` is the blocking half, run in a worker thread.
It works in three steps, so that every step's durability comes before the next one starts:

1. every local copy of every message is written to ``tmp/``, fsynced and renamed into ``new/``;
2. each ``new/`` directory the batch touched is fsynced once, which makes every rename into it
   durable (a thousand messages to one user cost one directory fsync, not a thousand);
3. the messages that also go to other domains are added to the outbound queue, each entry
   committing itself (:meth:`MailQueue.add`).

Only then may the server answer 250 to each message that succeeded.  A message fails as a whole:
if any of its copies cannot be stored, or the fsync of a directory holding one of them fails, the
copies it already has are removed again, so the client's retry cannot duplicate it.  The other
messages of the batch are not affected.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import outcome

from netlab.store.mail_queue import MailQueue, QueueEntry
from netlab.store.maildir import Maildir, fsync_dir

__all__ = ["Delivery", "store_batch"]


@dataclass(frozen=True)
class Delivery:
    """One accepted message and where it goes."""

    sender: str
    maildirs: tuple[Maildir, ...]  # the local recipients' Maildirs, each once
    remote: tuple[str, ...]  # recipients in other domains, for the outbound queue
    content: bytes = field(repr=False)  # LF line ends
    now: float  # wall-clock seconds, the queue entry's first-seen time


def store_batch(deliveries: list[Delivery], queue: MailQueue) -> list[outcome.Outcome[QueueEntry | None]]:
    """Store every delivery durably (blocking); per delivery its queue entry (None if all local).

    A delivery that fails has an :class:`outcome.Error` (an ``OSError`` as a rule) and leaves
    nothing behind.
    """
    results: list[outcome.Outcome[QueueEntry | None] | None] = [None] * len(deliveries)
    copies: list[list[tuple[Maildir, str]]] = [[] for _ in deliveries]
    for i, delivery in enumerate(deliveries):
        try:
            for maildir in delivery.maildirs:
                copies[i].append((maildir, maildir.deliver(delivery.content, sync_dir=False)))
        except Exception as exc:
            results[i] = _failed(exc, copies[i])
    synced: dict[Path, OSError | None] = {}
    for path in dict.fromkeys(maildir.new for placed in copies for maildir, _ in placed):
        try:
            fsync_dir(path)
            synced[path] = None
        except OSError as exc:
            synced[path] = exc
    for i, delivery in enumerate(deliveries):
        if results[i] is not None:
            continue
        error = next((synced[m.new] for m, _ in copies[i] if synced[m.new] is not None), None)
        if error is not None:
            results[i] = _failed(error, copies[i])
            continue
        try:
            entry = (
                queue.add(delivery.sender, list(delivery.remote), delivery.content, now=delivery.now)
                if delivery.remote
                else None
            )
        except Exception as exc:
            results[i] = _failed(exc, copies[i])
        else:
            results[i] = outcome.Value(entry)
    done = [r for r in results if r is not None]
    assert len(done) == len(deliveries)
    return done


def _failed(exc: Exception, copies: list[tuple[Maildir, str]]) -> outcome.Error:
    for maildir, name in copies:
        with contextlib.suppress(OSError):
            maildir.discard_new(name)
    copies.clear()
    return outcome.Error(exc)
