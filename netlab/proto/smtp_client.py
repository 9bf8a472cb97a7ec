"""The client side of SMTP as a sans-I/O machine (used by the relay and ``netlab mail send``).

Strategy: :meth:`SmtpClientConnection.send` turns command events into bytes and remembers, in
order, what each awaits; :meth:`SmtpClientConnection.next_event` parses the server's bytes into
:class:`Reply` events, one per command, oldest first, which is all that pipelining (RFC 2920)
needs on this side.  Message content is sent only after a 354, dot-stuffed.  A reply the machine
cannot parse, or one nobody asked for, is raised as :class:`RemoteProtocolError` whose ``reply``
is the temporary failure it amounts to (4.5.0), so a relay can treat it like any other 4yz.
"""

from __future__ import annotations

import re
from collections import deque

from netlab.proto.mail_lines import NEED_DATA, TOO_LONG, NeedData, ReceiveBuffer, dot_stuff
from netlab.proto.smtp_commands import format_command
from netlab.proto.smtp_events import (
    AuthResponse,
    ConnectionClosed,
    Data,
    Event,
    LocalProtocolError,
    MailFrom,
    MessageData,
    RemoteProtocolError,
    Reply,
    StartTls,
)

__all__ = ["NEED_DATA", "NeedData", "SmtpClientConnection", "extensions", "mail_command"]

#: Longest reply line we accept.  RFC 5321 section 4.5.3.1.5 allows 512; servers exceed it.
MAX_REPLY_LINE = 4096
#: Most lines in one reply (a long EHLO list has about 20).
MAX_REPLY_LINES = 200

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|$)(.*)", re.DOTALL)
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3}) ")


class _Greeting:
    """What the first reply answers: the connection itself."""


def _bad(text: str) -> RemoteProtocolError:
    return RemoteProtocolError(Reply(451, f"Bad reply from server: {text}", "4.5.0"), fatal=True)


class SmtpClientConnection:
    """One SMTP session, client side."""

    def __init__(self) -> None:
        self._buf = ReceiveBuffer()
        self._eof = False
        self._lines: list[tuple[int, str]] = []  # the lines of a multi-line reply so far
        self._awaiting: deque[Event | _Greeting] = deque([_Greeting()])
        self._may_send_content = False
        self.closed = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the server; b"" means it closed the connection."""
        if data:
            self._buf.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Reply | ConnectionClosed | NeedData:
        """The next complete reply, :class:`ConnectionClosed`, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the server sent something that is not a reply, or a reply
                to nothing; the session cannot go on.
        """
        while True:
            line = self._buf.next_line(MAX_REPLY_LINE)
            if line is None:
                if self._eof:
                    self.closed = True
                    return ConnectionClosed()
                return NEED_DATA
            if line is TOO_LONG:
                raise _bad("line too long")
            assert isinstance(line, bytes)
            match = _REPLY_LINE.fullmatch(line)
            if match is None:
                raise _bad(repr(line[:40]))
            code = int(match[1])
            if self._lines and code != self._lines[0][0]:
                raise _bad("reply code changed inside a multi-line reply")
            self._lines.append((code, match[3].decode("utf-8", "replace")))
            if len(self._lines) > MAX_REPLY_LINES:
                raise _bad("too many lines")
            if match[2] == b"-":
                continue
            return self._complete()

    def _complete(self) -> Reply:
        code = self._lines[0][0]
        texts = [text for _, text in self._lines]
        self._lines = []
        enhanced = None
        first = _ENHANCED.match(texts[0] + " ")
        if first and first[1][0] == str(code)[0]:
            enhanced = first[1]
            texts = [t[len(enhanced) + 1 :] if t.startswith(enhanced) else t for t in texts]
        if not self._awaiting:
            raise _bad(f"unexpected reply {code}")
        command = self._awaiting.popleft()
        reply = Reply(code, "\n".join(texts), enhanced)
        if isinstance(command, Data):
            self._may_send_content = code == 354
        if isinstance(command, StartTls) and code == 220 and len(self._buf):
            # RFC 3207 section 5: bytes after the 220 would be read as if they came over TLS.
            raise _bad("data after the STARTTLS reply")
        if code == 421:
            self.closed = True
        return reply

    def send(self, event: Event) -> bytes:
        """The bytes of a command, an AUTH response, or the message content (after a 354).

        Raises:
            LocalProtocolError: content before a 354, or an event that is not a command.
        """
        if self.closed:
            raise LocalProtocolError("the session is closed")
        if isinstance(event, MessageData):
            if not self._may_send_content:
                raise LocalProtocolError("message content may only follow a 354 reply to DATA")
            self._may_send_content = False
            self._awaiting.append(event)
            return dot_stuff(event.content)
        if isinstance(event, AuthResponse):
            self._awaiting.append(event)
            return event.line.encode("ascii") + b"\r\n"
        data = format_command(event)
        self._awaiting.append(event)
        return data

    @property
    def waiting(self) -> int:
        """How many replies are still owed (the greeting included)."""
        return len(self._awaiting)


def extensions(ehlo: Reply) -> dict[str, str]:
    """The service extensions in an EHLO reply: keyword (upper case) -> parameters."""
    out: dict[str, str] = {}
    for line in ehlo.lines[1:]:
        keyword, _, params = line.partition(" ")
        out[keyword.upper()] = params
    return out


def mail_command(ext: dict[str, str], sender: str, recipients: list[str], wire: bytes) -> MailFrom | Reply:
    """The MAIL command that sends this message to a server with extensions ``ext``, or why not.

    ``wire`` is the message as it will be sent (CRLF line ends).  MAIL declares SIZE when the
    server offers it (RFC 1870), BODY=8BITMIME for 8-bit content (RFC 6152) and SMTPUTF8 when an
    address or a header field is UTF-8 (RFC 6531 section 3.4).  A server that does not offer what
    the message needs must not be sent it as it is (RFC 6152 section 3, RFC 6531 section 3.2);
    the result is then the permanent failure the sender's bounce reports:

    - an internationalized address, and no SMTPUTF8: 553 5.6.7;
    - UTF-8 in the header section, and no SMTPUTF8: 550 5.6.9;
    - 8-bit octets anywhere, and no 8BITMIME: 554 5.6.3 (RFC 3463: conversion required but not
      supported; converting to quoted-printable would change what the sender signed).
    """
    headers = b"" if wire.startswith(b"\r\n") else wire.split(b"\r\n\r\n", 1)[0]
    utf8_addresses = not all(a.isascii() for a in [sender, *recipients])
    utf8 = utf8_addresses or not headers.isascii()
    eight_bit = not wire.isascii()
    if utf8 and "SMTPUTF8" not in ext:
        if utf8_addresses:
            return Reply(553, "Non-ASCII address, and the server does not offer SMTPUTF8", "5.6.7")
        return Reply(550, "UTF-8 header fields, and the server does not offer SMTPUTF8", "5.6.9")
    if eight_bit and "8BITMIME" not in ext:
        return Reply(554, "8-bit message content, and the server does not offer 8BITMIME", "5.6.3")
    return MailFrom(
        sender,
        size=len(wire) if "SIZE" in ext else None,
        body="8BITMIME" if eight_bit else None,
        smtputf8=utf8,
    )
