"""MailSystem.accept: every copy of a message is stored, or none."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from netlab.store.maildir import Maildir
from servers.mail_system import MailSystem
from tests.mailtest import maildir_files, make_mail


@pytest.fixture
def mail(tmp_path: Path) -> MailSystem:
    return make_mail(tmp_path, users=("alice@example.test", "bob@example.test"))


async def test_one_failed_copy_removes_the_others(mail: MailSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Maildir.deliver

    def failing(self: Maildir, content: bytes, *, sync_dir: bool = True) -> str:
        if "bob" in str(self.path):
            raise OSError(28, "No space left on device")
        return real(self, content, sync_dir=sync_dir)

    monkeypatch.setattr(Maildir, "deliver", failing)
    with pytest.raises(OSError, match="No space left"):
        await mail.accept("x@y.test", ["alice@example.test", "bob@example.test", "far@away.test"], b"hi\n")
    assert maildir_files(mail.root, "alice@example.test") == []
    assert mail.queue.entries() == []


async def test_queue_failure_removes_the_local_copies(
    mail: MailSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mail.queue, "add", full)
    with pytest.raises(OSError, match="No space left"):
        await mail.accept("x@y.test", ["alice@example.test", "far@away.test"], b"hi\n")
    assert maildir_files(mail.root, "alice@example.test") == []


async def test_messages_stored_at_the_same_time_share_a_commit(mail: MailSystem) -> None:
    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(mail.accept, "x@y.test", ["alice@example.test"], f"message {n}\n".encode())
    assert len(maildir_files(mail.root, "alice@example.test")) == 10
    assert mail._commits.batches < 10
