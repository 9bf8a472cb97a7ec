"""POP3 events, responses and errors, shared by the server and the client machines.

Commands are those of RFC 1939 (with TOP, UIDL and APOP), CAPA (RFC 2449), STLS (RFC 2595) and
AUTH (RFC 5034).  Responses are "+OK", "-ERR" (optionally with an RFC 2449 section 8 response
code such as ``[IN-USE]``) and the "+ " continuation of a SASL exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Apop",
    "Auth",
    "AuthResponse",
    "Capa",
    "ConnectionClosed",
    "Continue",
    "Dele",
    "Err",
    "Event",
    "List",
    "LocalProtocolError",
    "Noop",
    "Ok",
    "Pass",
    "Quit",
    "RemoteProtocolError",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
]


class Event:
    __slots__ = ()


@dataclass(frozen=True)
class User(Event):
    name: str


@dataclass(frozen=True)
class Pass(Event):
    password: str = field(repr=False)


@dataclass(frozen=True)
class Apop(Event):
    name: str
    digest: str


@dataclass(frozen=True)
class Stat(Event):
    pass


@dataclass(frozen=True)
class List(Event):
    which: int | None = None


@dataclass(frozen=True)
class Retr(Event):
    which: int


@dataclass(frozen=True)
class Dele(Event):
    which: int


@dataclass(frozen=True)
class Noop(Event):
    pass


@dataclass(frozen=True)
class Rset(Event):
    pass


@dataclass(frozen=True)
class Quit(Event):
    pass


@dataclass(frozen=True)
class Top(Event):
    which: int
    lines: int


@dataclass(frozen=True)
class Uidl(Event):
    which: int | None = None


@dataclass(frozen=True)
class Capa(Event):
    pass


@dataclass(frozen=True)
class Stls(Event):
    pass


@dataclass(frozen=True)
class Auth(Event):
    mechanism: str
    initial: str | None = None


@dataclass(frozen=True)
class AuthResponse(Event):
    line: str = field(repr=False)


@dataclass(frozen=True)
class ConnectionClosed(Event):
    pass


@dataclass(frozen=True)
class Ok(Event):
    """ "+OK text", followed by ``body`` as a dot-terminated block when it is not None.

    ``body`` is CRLF lines, not yet byte-stuffed (the machine stuffs it, RFC 1939 section 3).
    """

    text: str = ""
    body: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Err(Event):
    """ "-ERR [code] text"; ``code`` is an RFC 2449 response code such as "IN-USE" or "AUTH"."""

    text: str = ""
    code: str | None = None


@dataclass(frozen=True)
class Continue(Event):
    """ "+ challenge": the server's side of a SASL step (RFC 5034 section 4)."""

    challenge: str = ""


class LocalProtocolError(Exception):
    """We tried to do something the protocol does not allow now (a bug in the caller)."""


class RemoteProtocolError(Exception):
    """The peer sent something we refuse; ``reply`` is what to answer (close if ``fatal``)."""

    def __init__(self, reply: Err, *, fatal: bool = False) -> None:
        super().__init__(reply.text)
        self.reply = reply
        self.fatal = fatal
