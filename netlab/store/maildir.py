"""The mail store: one Maildir per user, written so that an accepted message survives a crash.

Layout under the store directory::

    users                          the users file (netlab.store.users)
    mailboxes/<domain>/<local>/    one Maildir per address: tmp/ new/ cur/
    queue/                         outgoing mail (netlab.store.mail_queue)

Strategy (the Maildir protocol, https://cr.yp.to/proto/maildir.html, made durable): a delivery
writes the message under a unique name in ``tmp/``, fsyncs the file, renames it into ``new/`` and
fsyncs ``new/`` so the rename itself is on disk.  Only after that may the SMTP server answer 250.
A crash before the rename leaves at most a stray file in ``tmp/``; after it, the message is whole.
Readers never see partial files because rename is atomic.  These calls block: servers run them
in worker threads.  One fsync of ``new/`` makes every rename done before it durable, so a caller
storing many messages at once (the SMTP server's group commit) renames them all and then fsyncs
each directory once (``deliver(..., sync_dir=False)``, then :func:`fsync_dir`).

Messages are stored with LF line ends, as Maildir readers expect.  The unique name carries the
size as Dovecot writes it (``,S=`` octets on disk, ``,W=`` octets with CRLF), so a POP3 listing
needs no reads.  POP3 moves messages from ``new/`` to ``cur/`` (adding the ``:2,`` info) as
Dovecot does, so either server can serve the same Maildir.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import secrets
import socket
import time
import urllib.parse
from pathlib import Path

from netlab.proto.pop3_maildrop import MessageInfo

__all__ = ["MailStore", "Maildir", "crlf_size", "fsync_dir", "normalize_address", "write_durably"]

_COUNTER = itertools.count()
# One random draw per process, not per message: with the PID, the counter and the microseconds it
# keeps names unguessable and unique without a getrandom() system call on every delivery.  The PID
# too is read once (and again in a forked child), not with a getpid() per delivery.
_SALT = secrets.token_hex(4)
_PID = os.getpid()
_SIZE_TAG = re.compile(r",W=(\d+)")
_MAX_UIDL = 70  # characters, RFC 1939 section 7
_MAX_CACHED = 4096  # Maildir objects a store keeps ready


def _after_fork() -> None:
    global _PID, _SALT
    _PID, _SALT = os.getpid(), secrets.token_hex(4)


os.register_at_fork(after_in_child=_after_fork)


def _hostname() -> str:
    # The Maildir spec: "/" and ":" in the host name are written as octal escapes.
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


_HOST = _hostname()


def normalize_address(address: str) -> str:
    """The key an address is stored under: local part and domain in lower case.

    RFC 5321 section 2.4 lets a server treat local parts as case-sensitive; treating them as
    case-insensitive, as nearly every server does, is what users expect.
    """
    local, _, domain = address.rpartition("@")
    return f"{local.lower()}@{domain.lower()}"


def crlf_size(content: bytes) -> int:
    """``len(to_crlf(content))``, what RETR will send, counted without building that copy."""
    if b"\r\n" in content:
        content = content.replace(b"\r\n", b"\n")
    return len(content) + content.count(b"\n")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(directory: Path, tmp_dir: Path, name: str, data: bytes, *, sync_dir: bool = True) -> Path:
    """Write ``data`` to ``tmp_dir/name``, fsync it, rename it to ``directory/name``, fsync.

    ``sync_dir=False`` leaves the last step to the caller, who can then make many renames into
    ``directory`` durable with one fsync (and must do so before anyone relies on them).
    """
    tmp = tmp_dir / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    final = directory / name
    os.rename(tmp, final)
    if sync_dir:
        fsync_dir(directory)
    return final


class Maildir:
    """One user's Maildir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp, self.new, self.cur = path / "tmp", path / "new", path / "cur"

    def create(self) -> None:
        for d in (self.tmp, self.new, self.cur):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    @staticmethod
    def unique_name(content: bytes) -> str:
        """A name nobody else can pick: time, microseconds, PID, counter, random, host, sizes."""
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        unique = f"{sec}.M{usec:06d}P{_PID}Q{next(_COUNTER)}R{_SALT}.{_HOST}"
        return f"{unique},S={len(content)},W={crlf_size(content)}"

    def deliver(self, content: bytes, *, sync_dir: bool = True) -> str:
        """Store ``content`` (LF line ends) durably in ``new/``; returns its file name.

        ``sync_dir=False``: the file is durable but its name in ``new/`` is not until the caller
        fsyncs ``new/`` (:func:`fsync_dir`), which one call can do for many deliveries.
        """
        name = self.unique_name(content)
        try:
            write_durably(self.new, self.tmp, name, content, sync_dir=sync_dir)
        except FileNotFoundError:
            # The first delivery to this user: make the Maildir (cheaper than checking each time).
            self.create()
            with contextlib.suppress(FileNotFoundError):
                (self.tmp / name).unlink()  # written before new/ turned out to be missing
            write_durably(self.new, self.tmp, name, content, sync_dir=sync_dir)
        return name

    def discard_new(self, name: str) -> None:
        """Undo a delivery (when another part of the same transaction failed)."""
        with contextlib.suppress(FileNotFoundError):
            (self.new / name).unlink()
            fsync_dir(self.new)

    def scan(self) -> list[MessageInfo]:
        """Every message, oldest first, after moving ``new/`` into ``cur/`` as a reader does.

        The ``key`` of each is its file name in ``cur/``; ``uid`` is the unique part of that
        name (what precedes the "," size tags and the ":" info), stable for the message's life.
        """
        self.create()
        for name in os.listdir(self.new):
            if name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):  # another reader moved it first
                os.rename(self.new / name, self.cur / f"{name}:2,")
        out = []
        for name in os.listdir(self.cur):
            if name.startswith("."):
                continue
            out.append(MessageInfo(uid=_uid(name), size=self._crlf_size(name), key=name))
        out.sort(key=lambda m: (_delivery_time(m.key), m.key))
        return out

    def _crlf_size(self, name: str) -> int:
        match = _SIZE_TAG.search(name.split(":", 1)[0])
        if match:
            return int(match[1])
        return crlf_size((self.cur / name).read_bytes())

    def read(self, key: str) -> bytes:
        return (self.cur / _checked(key)).read_bytes()

    def delete(self, keys: list[str]) -> list[str]:
        """Remove messages from ``cur/``; returns the keys that could not be removed."""
        failed = []
        for key in keys:
            try:
                (self.cur / _checked(key)).unlink()
            except FileNotFoundError:
                pass  # already gone: the goal is reached
            except OSError:
                failed.append(key)
        if keys:
            fsync_dir(self.cur)
        return failed

    def count(self) -> int:
        """Messages in new/ and cur/ (for tools and tests)."""
        self.create()
        return sum(1 for d in (self.new, self.cur) for n in os.listdir(d) if not n.startswith("."))


def _checked(key: str) -> str:
    if "/" in key or key in ("", ".", ".."):
        raise ValueError(f"bad message key {key!r}")
    return key


def _uid(name: str) -> str:
    unique = name.split(":", 1)[0].split(",", 1)[0]
    if len(unique) > _MAX_UIDL or not all(0x21 <= ord(c) <= 0x7E for c in unique):
        return hashlib.sha256(unique.encode()).hexdigest()[:40]
    return unique


def _delivery_time(name: str) -> tuple[int, int]:
    sec, _, rest = name.partition(".")
    usec = rest[1:7] if rest.startswith("M") else "0"
    return (int(sec) if sec.isdigit() else 0, int(usec) if usec.isdigit() else 0)


class MailStore:
    """The store directory: finds each address's Maildir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mailboxes = root / "mailboxes"
        self._maildirs: dict[str, Maildir] = {}  # address -> Maildir, so paths are built once

    def create(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.mailboxes.mkdir(mode=0o700, exist_ok=True)

    def maildir(self, address: str) -> Maildir:
        """The Maildir of ``address``; the local part is escaped so no name leaves the store."""
        found = self._maildirs.get(address)
        if found is None:
            if len(self._maildirs) >= _MAX_CACHED:
                self._maildirs.clear()
            found = self._maildirs[address] = self._locate(address)
        return found

    def _locate(self, address: str) -> Maildir:
        local, _, domain = normalize_address(address).rpartition("@")
        if not domain or "/" in domain or domain.startswith("."):
            raise ValueError(f"bad domain in {address!r}")
        safe_local = urllib.parse.quote(local, safe="!#$&'*+-=^_`{|}~")
        if safe_local.startswith("."):
            safe_local = "%2E" + safe_local[1:]
        return Maildir(self.mailboxes / domain / safe_local)
