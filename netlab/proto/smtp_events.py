"""SMTP events, replies and errors, shared by the server and the client machines.

Strategy (as h11's ``_events``): each command is a frozen dataclass that both sides use; the
server's machine produces them from bytes, the client's machine turns them into bytes.  A
:class:`Reply` goes the other way.  Replies carry an RFC 3463 enhanced status code (advertised as
ENHANCEDSTATUSCODES, RFC 2034), repeated on every line of a multi-line reply as RFC 2034 section
4 asks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

__all__ = [
    "Auth",
    "AuthResponse",
    "ConnectionClosed",
    "Data",
    "Event",
    "Hello",
    "Help",
    "LocalProtocolError",
    "MailFrom",
    "MessageData",
    "Noop",
    "Quit",
    "RcptTo",
    "RemoteProtocolError",
    "Reply",
    "Rset",
    "StartTls",
    "Vrfy",
]

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


class Event:
    """Base of everything the SMTP machines produce or accept."""

    __slots__ = ()


@dataclass(frozen=True)
class Reply(Event):
    """A server reply: ``code`` (RFC 5321 section 4.2), optional enhanced code, text lines.

    ``text`` may hold several lines separated by "\\n"; they become a multi-line reply.
    """

    code: int
    text: str = ""
    enhanced: str | None = None

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise LocalProtocolError(f"reply code {self.code} is not 2yz..5yz")
        if self.enhanced is not None and (
            not _ENHANCED.fullmatch(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise LocalProtocolError(f"enhanced code {self.enhanced} does not fit reply {self.code}")

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @property
    def positive(self) -> bool:
        return self.code < 400

    def encode(self) -> bytes:
        return self._wire

    @functools.cached_property
    def _wire(self) -> bytes:
        # Computed once per reply: servers keep their fixed replies as constants.
        prefix = f"{self.enhanced} " if self.enhanced else ""
        lines = self.lines
        out = [f"{self.code}-{prefix}{line}\r\n" for line in lines[:-1]]
        out.append(f"{self.code} {prefix}{lines[-1]}\r\n")
        return "".join(out).encode("utf-8")


@dataclass(frozen=True)
class Hello(Event):
    """HELO or EHLO (RFC 5321 section 4.1.1.1)."""

    domain: str
    extended: bool = True


@dataclass(frozen=True)
class MailFrom(Event):
    """MAIL FROM: the reverse-path ("" for the null sender of bounces) and its parameters."""

    address: str
    size: int | None = None  # SIZE=, RFC 1870
    body: str | None = None  # BODY=7BIT / 8BITMIME, RFC 6152
    smtputf8: bool = False  # RFC 6531
    auth: str | None = None  # AUTH=, RFC 4954 section 5


@dataclass(frozen=True)
class RcptTo(Event):
    """RCPT TO: one forward-path."""

    address: str


@dataclass(frozen=True)
class Data(Event):
    """The DATA command; the content follows as :class:`MessageData` after a 354 reply."""


@dataclass(frozen=True)
class MessageData(Event):
    """The message content: unstuffed, CRLF line ends, without the final "." line."""

    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Rset(Event):
    pass


@dataclass(frozen=True)
class Noop(Event):
    pass


@dataclass(frozen=True)
class Quit(Event):
    pass


@dataclass(frozen=True)
class Vrfy(Event):
    argument: str


@dataclass(frozen=True)
class Help(Event):
    topic: str = ""


@dataclass(frozen=True)
class StartTls(Event):
    """STARTTLS (RFC 3207)."""


@dataclass(frozen=True)
class Auth(Event):
    """AUTH mechanism [initial-response] (RFC 4954); the response is still base64."""

    mechanism: str
    initial: str | None = None


@dataclass(frozen=True)
class AuthResponse(Event):
    """A line the client sent in answer to a 334 challenge (base64, or "*" to cancel)."""

    line: str = field(repr=False)


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed its side."""


class LocalProtocolError(Exception):
    """We tried to do something the protocol does not allow now (a bug in the caller)."""


class RemoteProtocolError(Exception):
    """The peer sent something we refuse; ``reply`` is what to answer.

    ``fatal`` errors end the session: send the reply, then close.  Others refuse one command and
    the session goes on (the machine has already moved past the offending input).
    """

    def __init__(self, reply: Reply, *, fatal: bool = False) -> None:
        super().__init__(f"{reply.code} {reply.text}")
        self.reply = reply
        self.fatal = fatal
