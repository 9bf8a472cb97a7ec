"""The TFTP server's file policy: one root, no way out of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netlab.proto.tftp_packet import ErrorCode, RemoteProtocolError
from servers.tftp_paths import open_for_read, resolve_untrusted, target_for_write


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = (tmp_path / "root").resolve()
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("inside")
    (root / "link-in").symlink_to(root / "sub" / "f.txt")
    (root / "link-out").symlink_to(tmp_path)
    (tmp_path / "secret").write_text("outside")
    return root


def code_of(call: Callable[[], object]) -> int:
    with pytest.raises(RemoteProtocolError) as info:
        call()
    return info.value.error.code


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../secret", "sub/../../secret", "..", "link-out/secret", "sub/./../../secret"]
)
def test_names_leading_outside_are_access_violations(root: Path, name: str) -> None:
    assert code_of(lambda: resolve_untrusted(root, name)) == ErrorCode.ACCESS_VIOLATION


@pytest.mark.parametrize(("name", "expected"), [("sub/f.txt", "sub/f.txt"), ("./sub//f.txt", "sub/f.txt")])
def test_names_inside_resolve_inside(root: Path, name: str, expected: str) -> None:
    assert resolve_untrusted(root, name) == root / expected


def test_a_symlink_that_stays_inside_is_followed(root: Path) -> None:
    file, size = open_for_read(root, "link-in")
    with file:
        assert (file.read(), size) == (b"inside", 6)


def test_read_errors(root: Path) -> None:
    assert code_of(lambda: open_for_read(root, "nope")) == ErrorCode.FILE_NOT_FOUND
    assert code_of(lambda: open_for_read(root, "sub")) == ErrorCode.ACCESS_VIOLATION


def test_write_targets(root: Path) -> None:
    assert target_for_write(root, "new.bin", overwrite=False) == root / "new.bin"
    assert target_for_write(root, "sub/f.txt", overwrite=True) == root / "sub" / "f.txt"
    assert code_of(lambda: target_for_write(root, "sub/f.txt", overwrite=False)) == ErrorCode.FILE_EXISTS
    assert code_of(lambda: target_for_write(root, "nodir/x", overwrite=True)) == ErrorCode.FILE_NOT_FOUND
    assert code_of(lambda: target_for_write(root, "sub", overwrite=True)) == ErrorCode.ACCESS_VIOLATION
    assert code_of(lambda: target_for_write(root, ".", overwrite=True)) == ErrorCode.ACCESS_VIOLATION
    assert (
        code_of(lambda: target_for_write(root, "link-out/new", overwrite=True)) == ErrorCode.ACCESS_VIOLATION
    )
