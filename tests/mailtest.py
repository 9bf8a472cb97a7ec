"""Helpers for the mail tests: a store with users, line-oriented clients, server processes."""

from __future__ import annotations

import contextlib
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import argon2
import trio

from netlab.config import Pop3Config, SmtpConfig
from servers.mail_system import MailSystem
from servers.pop3_session import Pop3ServerContext
from servers.smtp_session import SmtpServerContext

ROOT = Path(__file__).resolve().parent.parent
CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse"


def make_mail(
    root: Path,
    domains: tuple[str, ...] = ("example.test",),
    users: tuple[str, ...] = ("alice@example.test",),
    *,
    threads: bool = False,
    clock: Callable[[], float] = time.time,
) -> MailSystem:
    mail = MailSystem(root, domains, hasher=CHEAP, threads=threads, clock=clock)
    for user in users:
        mail.users.set_password(user, PASSWORD, create=True)
    return mail


def smtp_context(mail: MailSystem, **settings: Any) -> SmtpServerContext:
    ssl_context = settings.pop("ssl_context", None)
    trusted = settings.pop("trusted", ())
    cfg = replace(SmtpConfig(), **settings)
    return SmtpServerContext(
        config=cfg, hostname="mx.test", mail=mail, ssl_context=ssl_context, trusted=trusted
    )


def pop3_context(mail: MailSystem, **settings: Any) -> Pop3ServerContext:
    ssl_context = settings.pop("ssl_context", None)
    cfg = replace(Pop3Config(), **settings)
    return Pop3ServerContext(config=cfg, hostname="pop.test", mail=mail, ssl_context=ssl_context)


@dataclass
class LineClient:
    """A client that types lines and reads SMTP replies or POP3 answers, as a person with telnet."""

    stream: trio.abc.Stream
    buffer: bytearray = field(default_factory=bytearray)

    async def send(self, *lines: str | bytes) -> None:
        data = b"".join((line.encode() if isinstance(line, str) else line) + b"\r\n" for line in lines)
        await self.stream.send_all(data)

    async def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(self.buffer))
            self.buffer += chunk
        line, _, rest = self.buffer.partition(b"\r\n")
        self.buffer = bytearray(rest)
        return line.decode("utf-8", "replace")

    async def reply(self) -> tuple[int, str]:
        """One SMTP reply: its code and its lines joined by newlines."""
        lines = [await self.line()]
        while lines[-1][3:4] == "-":
            lines.append(await self.line())
        return int(lines[0][:3]), "\n".join(line[4:] for line in lines)

    async def code(self) -> int:
        return (await self.reply())[0]

    async def block(self) -> list[str]:
        """A POP3 multi-line body (after its +OK line), unstuffed."""
        out = []
        while (line := await self.line()) != ".":
            out.append(line[1:] if line.startswith(".") else line)
        return out

    async def closed(self) -> bool:
        """True if the server closed the connection (nothing more arrives)."""
        return not self.buffer and await self.stream.receive_some(1) == b""


class FakeSocketStream(trio.abc.Stream):
    """A memory stream that reports a peer address, for policy tests (trusted networks)."""

    def __init__(self, inner: trio.abc.Stream, peer: str) -> None:
        self.inner = inner
        self.socket = _PeerName(peer)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class _PeerName:
    peer: str

    def getpeername(self) -> tuple[str, int]:
        return (self.peer, 40000)


def maildir_files(root: Path, address: str) -> list[Path]:
    """Every message file of ``address`` in the store at ``root`` (new/ and cur/)."""
    local, _, domain = address.lower().partition("@")
    box = root / "mailboxes" / domain / local
    return sorted(p for d in ("new", "cur") if (box / d).exists() for p in (box / d).iterdir())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_config(path: Path, store: Path, **tables: dict[str, object]) -> Path:
    """A TOML configuration with the store set in [smtp] and [pop3] and ``tables`` merged in."""
    merged: dict[str, dict[str, object]] = {
        "smtp": {"store": str(store), "listen": "127.0.0.1:0"},
        "pop3": {"store": str(store), "listen": "127.0.0.1:0"},
    }
    for table, values in tables.items():
        merged.setdefault(table, {}).update(values)
    lines = []
    for table, values in merged.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    log: Path


@contextlib.contextmanager
def netlab_process(
    args: list[str], scheme: str, log: Path, *, startup: float = 30.0
) -> Iterator[ServerProcess]:
    """Run ``python -m netlab ARGS`` until the block ends; yields it with the port it printed."""
    with open(log, "a") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netlab", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        port = _wait_for_port(proc, scheme, startup, log)
        yield ServerProcess(proc, port, log)
    finally:
        stop_process(proc)


def _wait_for_port(proc: subprocess.Popen[str], scheme: str, startup: float, log: Path) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + startup
    pattern = re.compile(rf"{scheme}://[\d.]+:(\d+)")
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if match := pattern.search(line):
            return int(match[1])
    stop_process(proc)
    raise RuntimeError(f"netlab did not start: {log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
