"""store_batch: many messages stored at once, one fsync per directory, each all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.store.mail_batch import Delivery, store_batch
from netlab.store.mail_queue import MailQueue
from netlab.store.maildir import Maildir, MailStore
from netlab.store.maildir import fsync_dir as real_fsync_dir


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    store = MailStore(tmp_path)
    store.create()
    return store


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories store_batch fsyncs, in order."""
    calls: list[Path] = []

    def fsync_dir(path: Path) -> None:
        calls.append(path)
        real_fsync_dir(path)

    monkeypatch.setattr("netlab.store.mail_batch.fsync_dir", fsync_dir)
    return calls


def delivery(*maildirs: Maildir, remote: tuple[str, ...] = (), content: bytes = b"hi\n") -> Delivery:
    return Delivery("x@far.test", maildirs, remote, content, now=1000.0)


def names(maildir: Maildir) -> list[str]:
    return sorted(p.name for p in maildir.new.iterdir()) if maildir.new.exists() else []


def test_a_batch_shares_one_fsync_per_directory(store: MailStore, synced: list[Path]) -> None:
    alice, bob = store.maildir("alice@a.test"), store.maildir("bob@a.test")
    batch = [delivery(alice, content=f"{n}\n".encode()) for n in range(5)] + [delivery(alice, bob)]
    results = store_batch(batch, MailQueue(store.root / "queue"))
    assert [r.unwrap() for r in results] == [None] * 6
    assert len(names(alice)) == 6 and len(names(bob)) == 1
    assert sorted(synced) == sorted([alice.new, bob.new])
    assert sorted((alice.new / n).read_bytes() for n in names(alice))[:5] == [
        b"0\n",
        b"1\n",
        b"2\n",
        b"3\n",
        b"4\n",
    ]


def test_a_failed_copy_fails_only_its_message(
    store: MailStore, synced: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = store.maildir("alice@a.test"), store.maildir("bob@a.test")
    real = Maildir.deliver

    def deliver(self: Maildir, content: bytes, *, sync_dir: bool = True) -> str:
        if self is bob and content == b"doomed\n":
            raise OSError(28, "No space left on device")
        return real(self, content, sync_dir=sync_dir)

    monkeypatch.setattr(Maildir, "deliver", deliver)
    results = store_batch(
        [delivery(alice), delivery(alice, bob, content=b"doomed\n"), delivery(bob)],
        MailQueue(store.root / "q"),
    )
    assert results[0].unwrap() is None and results[2].unwrap() is None
    with pytest.raises(OSError, match="No space"):
        results[1].unwrap()
    assert [(alice.new / n).read_bytes() for n in names(alice)] == [b"hi\n"]  # the doomed copy is gone
    assert [(bob.new / n).read_bytes() for n in names(bob)] == [b"hi\n"]


def test_a_failed_directory_fsync_fails_the_messages_in_it(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = store.maildir("alice@a.test"), store.maildir("bob@a.test")

    def fsync_dir(path: Path) -> None:
        if path == bob.new:
            raise OSError(5, "Input/output error")
        real_fsync_dir(path)

    monkeypatch.setattr("netlab.store.mail_batch.fsync_dir", fsync_dir)
    results = store_batch([delivery(alice), delivery(alice, bob), delivery(bob)], MailQueue(store.root / "q"))
    assert results[0].unwrap() is None
    for failed in results[1:]:
        with pytest.raises(OSError, match="Input/output"):
            failed.unwrap()
    assert len(names(alice)) == 1 and names(bob) == []


def test_remote_recipients_are_queued_after_the_local_copies(store: MailStore) -> None:
    alice = store.maildir("alice@a.test")
    queue = MailQueue(store.root / "queue")
    results = store_batch([delivery(alice, remote=("far@b.test",)), delivery(alice)], queue)
    entry = results[0].unwrap()
    assert entry is not None and entry.recipients == ["far@b.test"] and entry.first_seen == 1000.0
    assert results[1].unwrap() is None
    assert [e.id for e in queue.entries()] == [entry.id]


def test_a_queue_failure_removes_the_local_copies(store: MailStore, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = store.maildir("alice@a.test")
    queue = MailQueue(store.root / "queue")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(queue, "add", full)
    results = store_batch([delivery(alice, remote=("far@b.test",)), delivery(alice)], queue)
    with pytest.raises(OSError, match="No space"):
        results[0].unwrap()
    assert results[1].unwrap() is None
    assert len(names(alice)) == 1
