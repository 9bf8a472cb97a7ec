"""MailSystem.accept: every copy of a message is stored, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.store.maildir import Maildir
from servers.mail_system import MailSystem
from tests.mailtest import maildir_files, make_mail


@pytest.fixture
def mail(tmp_path: Path) -> MailSystem:
    return make_mail(tmp_path, users=("alice@example.test", "bob@example.test"))


async def test_one_failed_copy_removes_the_others(mail: MailSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Maildir.deliver

    def failing(self: Maildir, content: bytes) -> str:
        if "bob" in str(self.path):
            raise OSError(28, "No space left on device")
        return real(self, content)

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
