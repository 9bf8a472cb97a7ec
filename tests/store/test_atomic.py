"""Atomic files: nothing visible until commit, nothing left after a failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from netlab.store.atomic import AtomicFile


def test_nothing_is_visible_until_commit(tmp_path: Path) -> None:
    target = tmp_path / "file"
    stored = AtomicFile(target)
    stored.write(b"part one, ")
    stored.write(b"part two")
    assert not target.exists()
    assert stored.temp_path.parent == tmp_path
    stored.commit()
    assert target.read_bytes() == b"part one, part two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert list(tmp_path.iterdir()) == [target]
    stored.discard()  # harmless after commit
    assert target.exists()


def test_discard_and_exceptions_leave_nothing(tmp_path: Path) -> None:
    stored = AtomicFile(tmp_path / "a")
    stored.write(b"x")
    stored.discard()

    def fail_while_writing() -> None:
        with AtomicFile(tmp_path / "b") as other:
            other.write(b"y")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_while_writing()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    stored = AtomicFile(target, overwrite=True)
    stored.write(b"new")
    stored.commit()
    assert target.read_bytes() == b"new"


def test_without_overwrite_the_first_to_commit_wins(tmp_path: Path) -> None:
    target = tmp_path / "file"
    first, second = AtomicFile(target, overwrite=False), AtomicFile(target, overwrite=False)
    first.write(b"first")
    second.write(b"second")
    first.commit()
    with pytest.raises(FileExistsError):
        second.commit()
    assert target.read_bytes() == b"first"
    assert list(tmp_path.iterdir()) == [target]


def test_a_missing_directory_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AtomicFile(tmp_path / "no" / "such" / "file")


def test_commit_syncs_the_file_and_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("netlab.store.atomic.os.fsync", recording_fsync)
    stored = AtomicFile(tmp_path / "file")
    stored.write(b"data")
    stored.commit()
    assert synced == [str(stored.temp_path), str(tmp_path)]
