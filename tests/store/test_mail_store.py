"""The Maildir store, the users file, the outbound queue and maildrop locks (real files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import argon2
import pytest

from netlab.proto.mail_lines import to_crlf
from netlab.store.mail_queue import Failure, MailQueue
from netlab.store.maildir import Maildir, MailStore, crlf_size, normalize_address
from netlab.store.maildrop_lock import MaildropLocks
from netlab.store.users import UserDb, UserError, apop_secret

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_delivery_is_in_new_whole_with_sizes_in_the_name(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    content = b"Subject: x\n\nline\n"
    name = md.deliver(content)
    assert (md.new / name).read_bytes() == content
    assert name.endswith(f",S={len(content)},W={len(content) + 3}")
    assert os.listdir(md.tmp) == []
    assert oct((md.new / name).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "content", [b"", b"x", b"a\nb\n", b"a\r\nb\n", b"a\r\r\nb\r", b"\r\n\r\n", b"a\rb\n\n"]
)
def test_crlf_size_is_the_size_retr_sends(content: bytes) -> None:
    assert crlf_size(content) == len(to_crlf(content))


def test_names_are_unique(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    names = {md.deliver(b"x\n") for _ in range(200)}
    assert len(names) == 200


def test_scan_moves_to_cur_keeps_order_and_uids(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    first, second = md.deliver(b"one\n"), md.deliver(b"two two\n")
    listing = md.scan()
    assert [m.size for m in listing] == [5, 9]  # CRLF octets
    assert [m.uid for m in listing] == [first.split(",")[0], second.split(",")[0]]
    assert os.listdir(md.new) == []
    assert sorted(os.listdir(md.cur)) == sorted([f"{first}:2,", f"{second}:2,"])
    assert md.scan() == listing  # stable across sessions
    assert md.read(listing[1].key) == b"two two\n"


def test_scan_sizes_messages_written_by_others(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    md.create()
    (md.cur / "1700000000.foreign:2,S").write_bytes(b"a\r\nb\n")
    (listing,) = md.scan()
    assert listing.size == 6
    assert listing.uid == "1700000000.foreign"


def test_delete_and_discard(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    keep = md.deliver(b"keep\n")
    gone = md.deliver(b"gone\n")
    md.discard_new(gone)
    assert [m.key for m in md.scan()] == [f"{keep}:2,"]
    assert md.delete([f"{keep}:2,", "already-gone"]) == []
    assert md.count() == 0
    with pytest.raises(ValueError, match="bad message key"):
        md.read("../users")


@pytest.mark.parametrize(
    ("address", "relative"),
    [
        ("Alice@Example.TEST", "mailboxes/example.test/alice"),
        ("a/b@x.test", "mailboxes/x.test/a%2Fb"),
        ("..@x.test", "mailboxes/x.test/%2E."),
    ],
)
def test_mailbox_paths_stay_inside_the_store(tmp_path: Path, address: str, relative: str) -> None:
    assert MailStore(tmp_path).maildir(address).path == tmp_path / relative


def test_normalize_address() -> None:
    assert normalize_address("Bob@Mail.Example") == "bob@mail.example"


def test_users_add_verify_change(tmp_path: Path) -> None:
    users = UserDb(tmp_path / "users", hasher=CHEAP)
    users.set_password("Alice@Example.test", "s3cret", create=True)
    record = users.verify("alice@example.test", "s3cret")
    assert record is not None
    assert record.address == "alice@example.test"
    assert users.verify("alice@example.test", "wrong") is None
    assert users.verify("nobody@example.test", "s3cret") is None
    assert "s3cret" not in (tmp_path / "users").read_text()
    assert oct((tmp_path / "users").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(UserError, match="already exists"):
        users.set_password("alice@example.test", "x", create=True)
    with pytest.raises(UserError, match="no such user"):
        users.set_password("bob@example.test", "x", create=False)
    with pytest.raises(UserError, match="not a usable address"):
        users.set_password("no-at-sign", "x", create=True)
    users.set_password("alice@example.test", "new", create=False, apop=True)
    assert users.verify("alice@example.test", "new") is not None
    alice = users.get("alice@example.test")
    assert alice is not None
    assert apop_secret(alice) == "new"


def test_users_file_changes_are_seen_by_a_running_reader(tmp_path: Path) -> None:
    reader = UserDb(tmp_path / "users", hasher=CHEAP)
    assert not reader.exists("a@x.test")
    UserDb(tmp_path / "users", hasher=CHEAP).set_password("a@x.test", "pw", create=True)
    assert reader.exists("a@x.test")


def test_queue_commit_update_remove(tmp_path: Path) -> None:
    q = MailQueue(tmp_path / "queue")
    entry = q.add("a@x.test", ["b@y.test", "c@z.test"], b"msg\n", now=1000.0)
    assert q.read(entry.id) == b"msg\n"
    entry.attempts, entry.next_try = 1, 2000.0
    entry.failed.append(Failure("c@z.test", "5.1.1", "550 no"))
    q.save(entry)
    (loaded,) = q.entries()
    assert loaded == entry
    q.remove(entry.id)
    assert q.entries() == []
    assert sorted(os.listdir(q.root)) == ["tmp"]


def test_queue_recovery_drops_half_written_entries(tmp_path: Path) -> None:
    q = MailQueue(tmp_path / "queue")
    good = q.add("a@x.test", ["b@y.test"], b"ok\n", now=1.0)
    (q.root / "deadbeef.eml").write_bytes(b"no envelope: the client never got a 250")
    (q.tmp / "abc.json").write_bytes(b"{")
    assert q.recover() == 2
    assert [e.id for e in q.entries()] == [good.id]


def test_maildrop_lock_in_process_and_across_processes(tmp_path: Path) -> None:
    locks = MaildropLocks()
    box = tmp_path / "box"
    held = locks.try_acquire(box)
    assert held is not None
    assert locks.try_acquire(box) is None
    probe = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(box / 'netlab-pop3.lock')!r}, os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 3
    held.release()
    assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0
    again = locks.try_acquire(box)
    assert again is not None
    again.release()


def test_delivery_repairs_a_maildir_missing_new(tmp_path: Path) -> None:
    md = Maildir(tmp_path / "box")
    md.tmp.mkdir(parents=True)
    name = md.deliver(b"x\n")
    assert (md.new / name).read_bytes() == b"x\n"
    assert os.listdir(md.tmp) == []
