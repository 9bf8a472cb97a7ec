"""The POP3 side of ``netlab mail fetch``: log in, list, retrieve, delete.

Strategy: a small loop around :class:`Pop3ClientConnection` that sends one command and reads its
answer.  STLS (RFC 2595) comes before any credential.  Messages are saved under their UIDL (so a
second fetch recognises what it already has) and deleted only after the file is safely written;
the deletions take effect when the server enters UPDATE at QUIT (RFC 1939 section 6).
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import click
import trio

from netlab.proto.mail_lines import to_lf
from netlab.proto.pop3_client import NEED_DATA, Pop3ClientConnection
from netlab.proto.pop3_events import (
    ConnectionClosed,
    Continue,
    Dele,
    Err,
    Event,
    List,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    Stls,
    Uidl,
    User,
)

__all__ = ["fetch_messages"]

MAX_RECV = 65536
TIMEOUT = 120.0  # seconds per answer
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class _Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = Pop3ClientConnection()

    async def answer(self) -> Ok | Err | Continue:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    event = self.conn.next_event()
                except RemoteProtocolError as exc:
                    raise click.ClickException(exc.reply.text) from None
                if isinstance(event, ConnectionClosed):
                    raise click.ClickException("the server closed the connection")
                if event is not NEED_DATA:
                    assert isinstance(event, Ok | Err | Continue)
                    return event
                self.conn.receive_data(await self.stream.receive_some(MAX_RECV))

    async def ok(self, event: Event) -> Ok:
        await self.stream.send_all(self.conn.send(event))
        answer = await self.answer()
        if not isinstance(answer, Ok):
            code = f"[{answer.code}] " if isinstance(answer, Err) and answer.code else ""
            text = answer.text if isinstance(answer, Err) else answer.challenge
            raise click.ClickException(f"{type(event).__name__.upper()}: -ERR {code}{text}")
        return answer


def _pairs(body: bytes | None) -> dict[int, str]:
    out = {}
    for line in (body or b"").decode("utf-8", "replace").splitlines():
        number, _, value = line.partition(" ")
        if number.isdigit():
            out[int(number)] = value.strip()
    return out


async def fetch_messages(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    ssl_context: ssl.SSLContext | None,
    out_dir: Path | None,
    delete: bool,
    echo: Callable[[str], None],
) -> None:
    """List (``out_dir`` None) or save, and optionally delete, every message of ``user``."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        client = _Client(stream)
        greeting = await client.answer()
        if not isinstance(greeting, Ok):
            raise click.ClickException("the server refused the connection")
        if ssl_context is not None:
            await client.ok(Stls())
            client.stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
            await client.stream.do_handshake()
        await client.ok(User(user))
        await client.ok(Pass(password))
        uids = _pairs((await client.ok(Uidl())).body)
        sizes = _pairs((await client.ok(List())).body)
        if out_dir is None:
            for number, size in sizes.items():
                echo(f"{number:>5}  {size:>9} octets  {uids.get(number, '-')}")
            echo(f"{len(sizes)} message(s)")
        else:
            await trio.to_thread.run_sync(lambda: out_dir.mkdir(parents=True, exist_ok=True))
            for number in sizes:
                content = (await client.ok(Retr(number))).body or b""
                name = _SAFE.sub("_", uids.get(number, str(number))) + ".eml"
                await trio.to_thread.run_sync(_save, out_dir / name, to_lf(content))
                echo(f"saved {name}")
                if delete:
                    await client.ok(Dele(number))
        await client.ok(Quit())


def _save(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
