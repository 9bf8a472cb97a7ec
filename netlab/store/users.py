"""The users file: who may receive mail here and log in, with argon2 password hashes.

Format, one user per line (``#`` starts a comment)::

    alice@example.test:$argon2id$v=19$m=19456,t=2,p=1$...[:apop-secret-in-base64]

Strategy: passwords are stored only as argon2id hashes (RFC 9106, through argon2-cffi), whose
parameters travel inside each hash, so stronger settings apply to new passwords without breaking
old ones.  New hashes use OWASP's recommendation for servers (19 MiB, 2 passes, 1 lane) rather
than RFC 9106's 64 MiB: a mail server verifies a password for every login of every client, and
64 MiB per concurrent attempt turns a burst of logins into a memory exhaustion attack.

The optional third field is the shared secret APOP needs (RFC 1939 section 7 requires
the server to know it); it is written only for users who ask for APOP.  The file is mode 0600 and
is replaced atomically (write a temporary file, fsync, rename) under an ``flock``, so the running
servers, which re-read it when its modification time changes, never see half of it.

Hashing and verifying take tens of milliseconds on purpose; the servers call them in worker
threads.  Verifying an unknown user still costs one hash computation, so response times do not
tell which users exist.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import argon2

from netlab.proto.smtp_commands import parse_mailbox_untrusted
from netlab.store.maildir import normalize_address

__all__ = ["DEFAULT_HASHER", "UserDb", "UserError", "UserRecord", "apop_secret"]

#: argon2id with OWASP's server parameters (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
DEFAULT_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class UserError(ValueError):
    """A user cannot be added or changed; the text says why."""


@dataclass(frozen=True)
class UserRecord:
    address: str
    password_hash: str = field(repr=False)
    apop_secret: str | None = field(default=None, repr=False)


class UserDb:
    """The users file at ``path``.

    Args:
        hasher: the argon2 parameters for new passwords (tests pass cheap ones).
    """

    def __init__(self, path: Path, *, hasher: argon2.PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or DEFAULT_HASHER
        self._users: dict[str, UserRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        # Verifying against this keeps the time of a failed login the same for unknown users.
        self._dummy: str | None = None

    # -- reading -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            self._users = dict(_parse(self.path.read_text(encoding="utf-8")))
            self._stamp = stamp

    def get(self, address: str) -> UserRecord | None:
        self._refresh()
        return self._users.get(normalize_address(address))

    def exists(self, address: str) -> bool:
        return self.get(address) is not None

    def addresses(self) -> list[str]:
        self._refresh()
        return sorted(self._users)

    def verify(self, address: str, password: str) -> UserRecord | None:
        """The user if ``password`` is theirs, else None (blocking: run it in a thread)."""
        record = self.get(address)
        if record is None and self._dummy is None:
            self._dummy = self.hasher.hash("netlab: no such user")
        try:
            self.hasher.verify(record.password_hash if record else self._dummy or "", password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return None
        return record

    # -- writing -------------------------------------------------------------------------------

    def set_password(self, address: str, password: str, *, create: bool, apop: bool = False) -> None:
        """Add a user (``create``) or change an existing user's password (blocking).

        Raises:
            UserError: bad address, user exists (create) or does not exist (change), or
                an empty password.
        """
        if parse_mailbox_untrusted(address, utf8=True) is None or ":" in address or address.startswith('"'):
            raise UserError(f"not a usable address: {address!r}")
        if not password:
            raise UserError("the password is empty")
        key = normalize_address(address)
        record = UserRecord(
            key,
            self.hasher.hash(password),
            base64.b64encode(password.encode()).decode() if apop else None,
        )
        with self._locked():
            users = dict(_parse(self.path.read_text(encoding="utf-8"))) if self.path.exists() else {}
            if create and key in users:
                raise UserError(f"{key} already exists")
            if not create and key not in users:
                raise UserError(f"no such user: {key}")
            users[key] = record
            self._write(users)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, users: dict[str, UserRecord]) -> None:
        lines = ["# netlab mail users: address:argon2-hash[:apop-secret]"]
        for key in sorted(users):
            r = users[key]
            lines.append(f"{r.address}:{r.password_hash}" + (f":{r.apop_secret}" if r.apop_secret else ""))
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)


def _parse(text: str) -> Iterator[tuple[str, UserRecord]]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        address, _, rest = line.partition(":")
        password_hash, _, apop = rest.partition(":")
        if address and password_hash:
            key = normalize_address(address)
            yield key, UserRecord(key, password_hash, apop or None)


def apop_secret(record: UserRecord) -> str | None:
    """The plain shared secret of an APOP user (None if the user did not ask for APOP)."""
    if record.apop_secret is None:
        return None
    return base64.b64decode(record.apop_secret).decode()
