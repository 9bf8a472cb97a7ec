"""``netlab mail``: send and fetch mail, manage users, look at the outbound queue.

Strategy: the commands are thin.  ``send`` composes a message with the standard library's
``email`` package and submits it with :func:`netlab.aio.smtp_send.send_message` (the relay's own
client); ``fetch`` speaks POP3 through :class:`netlab.proto.pop3_client.Pop3ClientConnection`;
``adduser``, ``passwd`` and ``queue`` work on the store directly.  Passwords never appear on the
command line: they come from a prompt, from standard input when it is not a terminal (adduser,
passwd), or from ``$NETLAB_MAIL_PASSWORD`` (send, fetch).
"""

from __future__ import annotations

import datetime
import email.message
import email.utils
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

import click
import trio

from clients.mail_fetch import fetch_messages
from netlab.addr import parse_hostport
from netlab.aio.smtp_send import SmtpSendError, send_message
from netlab.aio.tls import client_context
from netlab.cli import config_option, load_config
from netlab.config import data_path
from netlab.store.mail_queue import MailQueue
from netlab.store.users import UserDb, UserError

__all__ = ["command"]


@click.group("mail")
def command() -> None:
    """Send and fetch mail, manage mail users, list the outbound queue."""


def _store(config_file: Path | None, store: str | None) -> Path:
    config = load_config(config_file)
    return data_path(config, store or config.smtp.store, "mail")


def _new_password(address: str) -> str:
    if sys.stdin.isatty():
        return str(click.prompt(f"Password for {address}", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.UsageError("no password on standard input")
    return line


def _login_password(user: str) -> str:
    if "NETLAB_MAIL_PASSWORD" in os.environ:
        return os.environ["NETLAB_MAIL_PASSWORD"]
    return str(click.prompt(f"Password for {user}", hide_input=True))


@command.command()
@config_option
@click.argument("address")
@click.option("--store", help="The mail store directory [<data_dir>/mail].")
@click.option("--apop", is_flag=True, help="Also keep the secret APOP needs (stored reversibly).")
def adduser(config_file: Path | None, address: str, store: str | None, apop: bool) -> None:
    """Add the mail user ADDRESS (password from a prompt, or from stdin if not a terminal)."""
    _set_password(_store(config_file, store), address, create=True, apop=apop)
    click.echo(f"added {address}")


@command.command()
@config_option
@click.argument("address")
@click.option("--store", help="The mail store directory [<data_dir>/mail].")
@click.option("--apop", is_flag=True, help="Also keep the secret APOP needs (stored reversibly).")
def passwd(config_file: Path | None, address: str, store: str | None, apop: bool) -> None:
    """Change the password of ADDRESS (from a prompt, or from stdin if not a terminal)."""
    _set_password(_store(config_file, store), address, create=False, apop=apop)
    click.echo(f"password changed for {address}")


def _set_password(root: Path, address: str, *, create: bool, apop: bool) -> None:
    users = UserDb(root / "users")
    try:
        users.set_password(address, _new_password(address), create=create, apop=apop)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc


@command.command()
@config_option
@click.option("--store", help="The mail store directory [<data_dir>/mail].")
def queue(config_file: Path | None, store: str | None) -> None:
    """List the mail waiting to be relayed."""
    entries = MailQueue(_store(config_file, store) / "queue").entries()
    if not entries:
        click.echo("queue is empty")
        return
    now = time.time()
    for e in entries:
        age = datetime.timedelta(seconds=int(now - e.first_seen))
        retry = datetime.timedelta(seconds=max(0, int(e.next_try - now)))
        click.echo(f"{e.id}  age {age}  attempts {e.attempts}  next try in {retry}  from <{e.sender}>")
        for rcpt in e.recipients:
            click.echo(f"    to <{rcpt}>")
        if e.last_error:
            click.echo(f"    last error: {e.last_error}")


@command.command()
@click.option("--server", default="127.0.0.1:2525", show_default=True, help="SMTP server HOST:PORT.")
@click.option("--from", "sender", required=True, help="Envelope and From: address.")
@click.option("--to", "recipients", required=True, multiple=True, help="Recipient (repeatable).")
@click.option("--subject", default="", help="Subject: line.")
@click.option("--body", type=click.File("rb"), default="-", help="Body file [stdin].")
@click.option("--tls", is_flag=True, help="Require STARTTLS.")
@click.option("--verify", is_flag=True, help="Verify the server's certificate.")
@click.option("--auth", "auth_user", help="Authenticate as this user ($NETLAB_MAIL_PASSWORD or a prompt).")
def send(
    server: str,
    sender: str,
    recipients: tuple[str, ...],
    subject: str,
    body: IO[bytes],
    tls: bool,
    verify: bool,
    auth_user: str | None,
) -> None:
    """Compose a message and submit it over SMTP."""
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(body.read().decode("utf-8", "replace"))
    content = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    auth = (auth_user, _login_password(auth_user)) if auth_user else None
    host, port = parse_hostport(server, default_port=25)

    async def run() -> None:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            result = await send_message(
                stream,
                helo=socket.gethostname(),
                sender=sender,
                recipients=list(recipients),
                content=content,
                tls="required" if tls else "opportunistic",
                ssl_context=client_context(verify=verify),
                server_hostname=host,
                auth=auth,
            )
        for rcpt, reply in result.replies.items():
            click.echo(f"<{rcpt}>: {reply.code} {reply.enhanced or ''} {reply.text}".replace("  ", " "))
        if len(result.delivered()) != len(recipients):
            raise click.ClickException("not every recipient was accepted")

    try:
        trio.run(run)
    except SmtpSendError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot reach {server}: {exc}") from exc


@command.command()
@click.option("--server", default="127.0.0.1:1100", show_default=True, help="POP3 server HOST:PORT.")
@click.option("--user", required=True, help="Login ($NETLAB_MAIL_PASSWORD or a prompt for the password).")
@click.option("--tls", is_flag=True, help="Use STLS before logging in.")
@click.option("--verify", is_flag=True, help="Verify the server's certificate.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Save messages here."
)
@click.option("--delete", is_flag=True, help="Delete the messages from the server after saving them.")
def fetch(server: str, user: str, tls: bool, verify: bool, out_dir: Path | None, delete: bool) -> None:
    """List the messages of a POP3 maildrop, or save them (--out) and optionally delete them."""
    if delete and out_dir is None:
        raise click.UsageError("--delete needs --out (messages are deleted only once saved)")
    password = _login_password(user)
    host, port = parse_hostport(server, default_port=110)
    try:
        trio.run(
            lambda: fetch_messages(
                host,
                port,
                user,
                password,
                ssl_context=client_context(verify=verify) if tls else None,
                out_dir=out_dir,
                delete=delete,
                echo=click.echo,
            )
        )
    except OSError as exc:
        raise click.ClickException(f"cannot reach {server}: {exc}") from exc
