"""Where a TFTP request may lead: the server's file-system policy, one root directory.

Strategy: a requested name is checked twice.  First as text: absolute names and any ``..``
component are refused outright, whatever the file system holds.  Then as a path: the name is
joined to the (already resolved) root and resolved, following every symlink, and the result
must still lie inside the root, so a symlink inside the root that points elsewhere is refused
too.  Files are then opened by their resolved path with ``O_NOFOLLOW``, which narrows the window
in which someone could swap a checked directory for a symlink.

Every refusal is a :class:`RemoteProtocolError` carrying the ERROR the client gets (RFC 1350
appendix): 1 for a file that does not exist, 2 (access violation) for anything outside the root
or not readable, 6 for an upload over an existing file when overwriting is off.  These
functions block (``stat``, ``open``); the server runs them in a worker thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from netlab.proto.tftp_packet import ErrorCode, RemoteProtocolError

__all__ = ["open_for_read", "resolve_untrusted", "target_for_write"]


def _denied(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.ACCESS_VIOLATION, why)


def resolve_untrusted(root: Path, filename: str) -> Path:
    """The absolute path ``filename`` names inside ``root`` (which must be resolved).

    Raises:
        RemoteProtocolError: ERROR 2, the name is absolute, climbs with ``..`` or leads outside
            the root through a symlink.
    """
    name = PurePosixPath(filename)
    if name.is_absolute():
        raise _denied("absolute paths are not allowed")
    if ".." in name.parts:
        raise _denied("'..' is not allowed in file names")
    resolved = (root / name).resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise _denied("path leads outside the served directory")
    return resolved


def open_for_read(root: Path, filename: str) -> tuple[BinaryIO, int]:
    """Open a file to send; returns it with its size.

    Raises:
        RemoteProtocolError: ERROR 1 if it does not exist, ERROR 2 if it may not be read.
    """
    path = resolve_untrusted(root, filename)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RemoteProtocolError(ErrorCode.FILE_NOT_FOUND, "file not found") from None
    except OSError as exc:
        raise _denied(exc.strerror or "cannot open the file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _denied("not a regular file")
    return os.fdopen(fd, "rb", buffering=0), st.st_size


def target_for_write(root: Path, filename: str, *, overwrite: bool) -> Path:
    """Where an upload of ``filename`` will be stored (the file is not created here).

    Raises:
        RemoteProtocolError: ERROR 2 outside the root or onto a non-file, ERROR 1 if the
            directory does not exist, ERROR 6 if the file exists and overwriting is off.
    """
    path = resolve_untrusted(root, filename)
    if path == root:
        raise _denied("not a regular file")
    if not path.parent.is_dir():
        raise RemoteProtocolError(ErrorCode.FILE_NOT_FOUND, "no such directory")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(st.st_mode):
        raise _denied("not a regular file")
    if not overwrite:
        raise RemoteProtocolError(ErrorCode.FILE_EXISTS, "file already exists")
    return path
