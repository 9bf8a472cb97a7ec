"""The server side of POP3 (RFC 1939, 2449, 2595, 5034) as a sans-I/O machine.

Strategy: as for SMTP, the machine reads one command at a time and the driver answers it with
:class:`Ok`, :class:`Err` or :class:`Continue`; one table, :data:`TRANSITIONS`, says which
commands each state accepts and where each kind of answer leads.  Commands that are unknown,
malformed or not valid in the current state are refused here with "-ERR" (RFC 1939 section 3),
raised as :class:`RemoteProtocolError` for the driver to send.

The UPDATE state of RFC 1939 section 6 is the driver's work between reading QUIT in the
TRANSACTION state and sending its answer: it applies the deletions, then answers; the answer
closes the session either way.  Multi-line answers are byte-stuffed here (section 3).
"""

from __future__ import annotations

import enum
from typing import NoReturn

from netlab.proto.mail_lines import NEED_DATA, TOO_LONG, NeedData, ReceiveBuffer, dot_stuff
from netlab.proto.pop3_events import (
    Apop,
    Auth,
    AuthResponse,
    Capa,
    ConnectionClosed,
    Continue,
    Dele,
    Err,
    Event,
    List,
    LocalProtocolError,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)

__all__ = ["MAX_COMMAND_LINE", "NEED_DATA", "TRANSITIONS", "NeedData", "Pop3ServerConnection", "State"]

#: RFC 2449 section 4 limits client commands to 255 octets; we read up to twice that.
MAX_COMMAND_LINE = 512
#: SASL responses may be longer than commands (RFC 5034 section 4).
MAX_AUTH_LINE = 12288
MAX_ERRORS = 20
_MAX_ARG = 40  # octets; RFC 1939 section 3


class State(enum.Enum):
    GREETING = "greeting"
    AUTHORIZATION = "authorization"
    USER = "user"  # USER accepted, PASS expected next
    AUTH = "auth"  # inside a SASL exchange
    TRANSACTION = "transaction"
    CLOSED = "closed"


_S = State
_OK, _ERR, _MORE = "ok", "err", "more"


def _build() -> dict[tuple[State, type[Event]], dict[str, State]]:
    table: dict[tuple[State, type[Event]], dict[str, State]] = {}
    for s in (_S.AUTHORIZATION, _S.USER):
        table[s, User] = {_OK: _S.USER, _ERR: _S.AUTHORIZATION}
        table[s, Apop] = {_OK: _S.TRANSACTION, _ERR: _S.AUTHORIZATION}
        table[s, Auth] = {_OK: _S.TRANSACTION, _MORE: _S.AUTH, _ERR: _S.AUTHORIZATION}
        table[s, Capa] = {_OK: s}
        # RFC 2595 section 4: after TLS the client starts over (and may not reuse USER).
        table[s, Stls] = {_OK: _S.AUTHORIZATION, _ERR: s}
        table[s, Quit] = {_OK: _S.CLOSED, _ERR: _S.CLOSED}
    table[_S.USER, Pass] = {_OK: _S.TRANSACTION, _ERR: _S.AUTHORIZATION}
    table[_S.AUTH, AuthResponse] = {_OK: _S.TRANSACTION, _MORE: _S.AUTH, _ERR: _S.AUTHORIZATION}
    for kind in (Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa):
        table[_S.TRANSACTION, kind] = {_OK: _S.TRANSACTION, _ERR: _S.TRANSACTION}
    # QUIT in TRANSACTION enters UPDATE; "-ERR some deleted messages not removed" also closes.
    table[_S.TRANSACTION, Quit] = {_OK: _S.CLOSED, _ERR: _S.CLOSED}
    return table


#: (state, command) -> {"ok" | "err" | "more": next state}.
TRANSITIONS = _build()


def _number(arg: str) -> int:
    if not arg.isdigit() or len(arg) > 10 or int(arg) == 0:
        raise RemoteProtocolError(Err(f"Invalid message number: {arg[:_MAX_ARG]}"))
    return int(arg)


def _parse_untrusted(line: bytes) -> Event:
    """One command line as an event; refusals are raised as RemoteProtocolError."""
    if b"\0" in line:
        raise RemoteProtocolError(Err("NUL byte in command"))
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(Err("Command is not valid UTF-8")) from None
    keyword, _, rest = text.partition(" ")
    keyword = keyword.upper()
    if keyword == "PASS":
        # RFC 1939 section 7: the password is the rest of the line, spaces included.
        return Pass(rest)
    args = rest.split()
    if any(len(a) > _MAX_ARG for a in args) and keyword != "AUTH":
        raise RemoteProtocolError(Err("Argument too long"))
    arity: dict[str, tuple[int, int]] = {
        "USER": (1, 1),
        "APOP": (2, 2),
        "STAT": (0, 0),
        "LIST": (0, 1),
        "RETR": (1, 1),
        "DELE": (1, 1),
        "NOOP": (0, 0),
        "RSET": (0, 0),
        "QUIT": (0, 0),
        "TOP": (2, 2),
        "UIDL": (0, 1),
        "CAPA": (0, 0),
        "STLS": (0, 0),
        "AUTH": (1, 2),
    }
    if keyword not in arity:
        raise RemoteProtocolError(Err("Unknown command"))
    low, high = arity[keyword]
    if not low <= len(args) <= high:
        raise RemoteProtocolError(Err(f"Wrong number of arguments for {keyword}"))
    if keyword == "USER":
        return User(args[0])
    if keyword == "APOP":
        return Apop(args[0], args[1].lower())
    if keyword in ("LIST", "UIDL"):
        which = _number(args[0]) if args else None
        return List(which) if keyword == "LIST" else Uidl(which)
    if keyword in ("RETR", "DELE"):
        return Retr(_number(args[0])) if keyword == "RETR" else Dele(_number(args[0]))
    if keyword == "TOP":
        if not args[1].isdigit() or len(args[1]) > 10:
            raise RemoteProtocolError(Err("Invalid line count"))
        return Top(_number(args[0]), int(args[1]))
    if keyword == "AUTH":
        return Auth(args[0].upper(), args[1] if len(args) == 2 else None)
    simple: dict[str, Event] = {
        "STAT": Stat(),
        "NOOP": Noop(),
        "RSET": Rset(),
        "QUIT": Quit(),
        "CAPA": Capa(),
        "STLS": Stls(),
    }
    return simple[keyword]


class Pop3ServerConnection:
    """One POP3 session, server side."""

    def __init__(self, *, max_errors: int = MAX_ERRORS) -> None:
        self.state = State.GREETING
        self.errors = 0
        self.max_errors = max_errors
        self._buf = ReceiveBuffer()
        self._eof = False
        self._pending: Event | None = None
        self._refused_next: State | None = None

    @property
    def closed(self) -> bool:
        """The session is over (QUIT answered, 421 sent, or the peer gone)."""
        return self.state is _S.CLOSED

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the client; b"" means it closed its side."""
        if data:
            self._buf.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        """The next command, :class:`ConnectionClosed`, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the command is refused; send ``exc.reply`` (close if fatal).
            LocalProtocolError: the previous command has not been answered.
        """
        if self._pending is not None or self._refused_next is not None:
            raise LocalProtocolError("answer the previous command first")
        if self.state in (_S.GREETING, _S.CLOSED):
            raise LocalProtocolError(f"no commands are read in state {self.state.name}")
        if self.errors >= self.max_errors:
            self._refuse(Err("Too many errors"), _S.CLOSED, fatal=True)
        line = self._buf.next_line(MAX_AUTH_LINE if self.state is _S.AUTH else MAX_COMMAND_LINE)
        if line is None:
            if self._eof:
                # RFC 1939 section 6: a session that ends without QUIT does not enter UPDATE.
                self.state = _S.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        if line is TOO_LONG:
            self._refuse(Err("Line too long"))
        assert isinstance(line, bytes)
        if self.state is _S.AUTH:
            self._pending = AuthResponse(line.decode("ascii", "replace"))
            return self._pending
        try:
            event = _parse_untrusted(line)
        except RemoteProtocolError as exc:
            self._refuse(exc.reply)
        if (self.state, type(event)) not in TRANSITIONS:
            self._refuse(Err(f"{type(event).__name__.upper()} not valid in the {self.state.value} state"))
        self._pending = event
        return event

    def _refuse(self, reply: Err, next_state: State | None = None, *, fatal: bool = False) -> NoReturn:
        self._refused_next = next_state or self.state
        raise RemoteProtocolError(reply, fatal=fatal)

    def send(self, event: Ok | Err | Continue) -> bytes:
        """The bytes of the answer to the pending command (or of the greeting).

        Raises:
            LocalProtocolError: nothing to answer, or an answer that does not fit.
        """
        if self.state is _S.GREETING:
            if not isinstance(event, Ok) or event.body is not None:
                raise LocalProtocolError("the greeting is a single-line +OK")
            self.state = _S.AUTHORIZATION
        elif self._refused_next is not None:
            if not isinstance(event, Err):
                raise LocalProtocolError("a refusal is answered with -ERR")
            self.state = self._refused_next
        elif self._pending is None:
            raise LocalProtocolError("no command is waiting for an answer")
        else:
            kind = _OK if isinstance(event, Ok) else _ERR if isinstance(event, Err) else _MORE
            outcomes = TRANSITIONS[self.state, type(self._pending)]
            if kind not in outcomes:
                raise LocalProtocolError(f"{kind} is not an answer to {type(self._pending).__name__}")
            if isinstance(self._pending, Stls) and kind == _OK:
                # RFC 2595 section 4: plaintext pipelined after STLS must not be used.
                self._buf.clear()
            self.state = outcomes[kind]
        if isinstance(event, Err):
            self.errors += 1
        self._pending = None
        self._refused_next = None
        return _encode(event)


def _encode(event: Ok | Err | Continue) -> bytes:
    if isinstance(event, Continue):
        return f"+ {event.challenge}\r\n".encode()
    if isinstance(event, Err):
        code = f"[{event.code}] " if event.code else ""
        return f"-ERR {code}{event.text}\r\n".encode()
    head = f"+OK {event.text}".rstrip() + "\r\n"
    if event.body is None:
        return head.encode()
    return head.encode() + dot_stuff(event.body)
