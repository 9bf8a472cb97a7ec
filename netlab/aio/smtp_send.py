"""Handing one message to one SMTP server: the client driver shared by the relay and
``netlab mail send``.

Strategy: a thin loop around :class:`SmtpClientConnection`.  It reads the greeting, says EHLO
(HELO if EHLO is refused, RFC 5321 section 3.2), moves to TLS when the server offers STARTTLS
(RFC 3207; required or opportunistic as the caller asks) and says EHLO again, authenticates if
asked (PLAIN with an initial response, else LOGIN), then sends MAIL, every RCPT and DATA.  With
PIPELINING (RFC 2920) that envelope goes out in one write and the replies are read after; without
it, one command at a time.  MAIL gets SIZE, BODY=8BITMIME and SMTPUTF8 when the server offers
them and the message needs them.  Every wait for a reply has a time limit (RFC 5321 section
4.5.3.2 gives 5 minutes for most and 10 for the end of data).

The result says, per recipient, the reply that decided it: the RCPT refusal, or the reply to the
end of data.  Failures that concern the whole session raise :class:`SmtpSendError` with the
reply that explains them (the server's, or a 4yz of ours for network trouble).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import ssl
from dataclasses import dataclass, field

import trio

from netlab.proto.mail_lines import to_crlf
from netlab.proto.sasl import plain_response
from netlab.proto.smtp_client import NEED_DATA, SmtpClientConnection, extensions, mail_command
from netlab.proto.smtp_events import (
    Auth,
    AuthResponse,
    ConnectionClosed,
    Data,
    Event,
    Hello,
    MessageData,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    StartTls,
)

__all__ = ["SendResult", "SmtpSendError", "send_message"]

log = logging.getLogger(__name__)

MAX_RECV = 65536
REPLY_TIMEOUT = 300.0  # seconds, RFC 5321 section 4.5.3.2.2-4
FINAL_TIMEOUT = 600.0  # seconds for the reply to the end of data, section 4.5.3.2.6


class SmtpSendError(Exception):
    """The session failed as a whole; ``reply`` says how (``reply.code`` 4yz: try again).

    ``local``: the reply is this client's verdict (a timeout, a broken session, a message the
    server cannot take), not one the server sent.
    """

    def __init__(self, reply: Reply, stage: str, *, local: bool = False) -> None:
        super().__init__(f"{stage}: {reply.code} {reply.text}")
        self.reply = reply
        self.stage = stage
        self.local = local


@dataclass
class SendResult:
    """Per recipient, the reply that decided its fate (2yz: delivered)."""

    replies: dict[str, Reply] = field(default_factory=dict)
    tls: bool = False

    def delivered(self) -> list[str]:
        return [r for r, reply in self.replies.items() if reply.code // 100 == 2]


class _Client:
    def __init__(self, stream: trio.abc.Stream, reply_timeout: float) -> None:
        self.stream = stream
        self.conn = SmtpClientConnection()
        self.reply_timeout = reply_timeout

    async def reply(self, stage: str, limit: float | None = None) -> Reply:
        with trio.move_on_after(limit or self.reply_timeout):
            while True:
                try:
                    event = self.conn.next_event()
                except RemoteProtocolError as exc:
                    raise SmtpSendError(exc.reply, stage, local=True) from None
                if isinstance(event, Reply):
                    return event
                if isinstance(event, ConnectionClosed):
                    raise SmtpSendError(Reply(421, "Connection closed by server", "4.4.2"), stage, local=True)
                assert event is NEED_DATA
                self.conn.receive_data(await self.stream.receive_some(MAX_RECV))
        raise SmtpSendError(
            Reply(451, f"Timed out waiting for the {stage} reply", "4.4.2"), stage, local=True
        )

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.conn.send(e) for e in events))

    async def command(self, event: Event, stage: str) -> Reply:
        await self.send(event)
        return await self.reply(stage)


async def send_message(
    stream: trio.abc.Stream,
    *,
    helo: str,
    sender: str,
    recipients: list[str],
    content: bytes,
    tls: str = "opportunistic",
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    auth: tuple[str, str] | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
) -> SendResult:
    """Send ``content`` (LF or CRLF line ends) from ``sender`` to ``recipients`` over ``stream``.

    Args:
        tls: "never", "opportunistic" (STARTTLS when offered) or "required".
        auth: (user, password) to authenticate with, or None.

    Raises:
        SmtpSendError: the session failed before any recipient's fate was known.
        trio.BrokenResourceError, OSError: the connection broke.
    """
    client = _Client(stream, reply_timeout)
    result = SendResult()
    greeting = await client.reply("greeting")
    if greeting.code != 220:
        raise SmtpSendError(greeting, "greeting")
    ext = await _hello(client, helo)
    if "STARTTLS" in ext and tls != "never":
        reply = await client.command(StartTls(), "STARTTLS")
        if reply.code != 220:
            if tls == "required":
                raise SmtpSendError(reply, "STARTTLS")
        else:
            client.stream = trio.SSLStream(
                stream, ssl_context or ssl.create_default_context(), server_hostname=server_hostname
            )
            try:
                await client.stream.do_handshake()
            except trio.BrokenResourceError as exc:
                raise SmtpSendError(
                    Reply(454, f"TLS handshake failed: {exc.__cause__}", "4.7.0"), "TLS", local=True
                ) from exc
            result.tls = True
            ext = await _hello(client, helo)
    elif tls == "required":
        raise SmtpSendError(Reply(530, "Server does not offer STARTTLS", "5.7.0"), "STARTTLS", local=True)
    if auth is not None:
        await _authenticate(client, ext, *auth)

    wire = to_crlf(content)
    mail = mail_command(ext, sender, recipients, wire)
    if isinstance(mail, Reply):
        # This server cannot take the message as it is (8-bit or UTF-8 where it offers neither
        # 8BITMIME nor SMTPUTF8): end the session before MAIL; the relay bounces the message.
        await _quit(client)
        raise SmtpSendError(mail, "MAIL", local=True)
    rcpts = [RcptTo(r) for r in recipients]
    if "PIPELINING" in ext:
        await client.send(mail, *rcpts, Data())
        mail_reply = await client.reply("MAIL")
        rcpt_replies = [await client.reply("RCPT") for _ in rcpts]
        data_reply = await client.reply("DATA")
        if mail_reply.code != 250:
            raise SmtpSendError(mail_reply, "MAIL")
    else:
        mail_reply = await client.command(mail, "MAIL")
        if mail_reply.code != 250:
            raise SmtpSendError(mail_reply, "MAIL")
        rcpt_replies = [await client.command(r, "RCPT") for r in rcpts]
        if any(r.code // 100 == 2 for r in rcpt_replies):
            data_reply = await client.command(Data(), "DATA")
        else:
            data_reply = Reply(554, "No valid recipients", "5.5.1")  # DATA not sent at all
    accepted = []
    for rcpt, reply in zip(recipients, rcpt_replies, strict=True):
        result.replies[rcpt] = reply
        if reply.code // 100 == 2:
            accepted.append(rcpt)
    if accepted:
        if data_reply.code != 354:
            raise SmtpSendError(data_reply, "DATA")
        await client.send(MessageData(wire))
        final = await client.reply("end of data", FINAL_TIMEOUT)
        for rcpt in accepted:
            result.replies[rcpt] = final
    await _quit(client)
    return result


async def _quit(client: _Client) -> None:
    """QUIT, as a courtesy: whatever the server answers, the outcome is already decided."""
    with trio.move_on_after(5), contextlib.suppress(SmtpSendError, trio.BrokenResourceError, OSError):
        await client.command(Quit(), "QUIT")


async def _hello(client: _Client, helo: str) -> dict[str, str]:
    reply = await client.command(Hello(helo), "EHLO")
    if reply.code == 250:
        return extensions(reply)
    if reply.code // 100 == 5:
        reply = await client.command(Hello(helo, extended=False), "HELO")
        if reply.code == 250:
            return {}
    raise SmtpSendError(reply, "EHLO")


async def _authenticate(client: _Client, ext: dict[str, str], user: str, password: str) -> None:
    mechanisms = ext.get("AUTH", "").upper().split()
    if "PLAIN" in mechanisms:
        reply = await client.command(Auth("PLAIN", plain_response(user, password)), "AUTH")
    elif "LOGIN" in mechanisms:
        reply = await client.command(Auth("LOGIN"), "AUTH")
        for answer in (user, password):
            if reply.code != 334:
                break
            reply = await client.command(AuthResponse(base64.b64encode(answer.encode()).decode()), "AUTH")
    else:
        raise SmtpSendError(
            Reply(530, "Server offers no AUTH mechanism we speak", "5.7.0"), "AUTH", local=True
        )
    if reply.code != 235:
        raise SmtpSendError(reply, "AUTH")
