"""The client side of POP3 as a sans-I/O machine (used by ``netlab mail fetch``).

Strategy: :meth:`Pop3ClientConnection.send` writes a command and remembers it, because whether
a "+OK" is followed by a dot-terminated block depends on the command (RFC 1939: LIST and UIDL
without an argument, RETR, TOP; RFC 2449: CAPA).  :meth:`Pop3ClientConnection.next_event` hands
back :class:`Ok` (with ``body`` unstuffed, CRLF line ends), :class:`Err` or :class:`Continue`.
"""

from __future__ import annotations

from collections import deque

from netlab.proto.mail_lines import NEED_DATA, TOO_LONG, NeedData, ReceiveBuffer
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

__all__ = ["NEED_DATA", "NeedData", "Pop3ClientConnection", "format_command"]

MAX_RESPONSE_LINE = 4096
#: The largest multi-line answer we keep (a message we fetch, as received).
MAX_BODY = 256 * 1024 * 1024


class _Greeting(Event):
    pass


def _multiline(command: Event) -> bool:
    return isinstance(command, Capa | Retr | Top) or (
        isinstance(command, List | Uidl) and command.which is None
    )


def format_command(event: Event) -> bytes:
    """The line (with CRLF) that sends ``event``.

    Raises:
        LocalProtocolError: the event is not a POP3 command.
    """
    match event:
        case User(name):
            text = f"USER {name}"
        case Pass(password):
            text = f"PASS {password}"
        case Apop(name, digest):
            text = f"APOP {name} {digest}"
        case List(which) | Uidl(which):
            text = ("LIST" if isinstance(event, List) else "UIDL") + ("" if which is None else f" {which}")
        case Retr(which) | Dele(which):
            text = f"{'RETR' if isinstance(event, Retr) else 'DELE'} {which}"
        case Top(which, lines):
            text = f"TOP {which} {lines}"
        case Auth(mechanism, initial):
            text = f"AUTH {mechanism}" + ("" if initial is None else f" {initial}")
        case AuthResponse(line):
            text = line
        case Stat() | Noop() | Rset() | Quit() | Capa() | Stls():
            text = type(event).__name__.upper()
        case _:
            raise LocalProtocolError(f"{type(event).__name__} is not a POP3 command")
    return text.encode("utf-8") + b"\r\n"


class Pop3ClientConnection:
    def __init__(self) -> None:
        self._buf = ReceiveBuffer()
        self._eof = False
        self._awaiting: deque[Event] = deque([_Greeting()])
        self._head: Ok | None = None  # a "+OK" whose block has not fully arrived

    def receive_data(self, data: bytes | bytearray) -> None:
        if data:
            self._buf.feed(data)
        else:
            self._eof = True

    def send(self, event: Event) -> bytes:
        data = format_command(event)
        self._awaiting.append(event)
        return data

    def next_event(self) -> Ok | Err | Continue | ConnectionClosed | NeedData:
        """The next answer, :class:`ConnectionClosed`, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the server sent something that is not a POP3 answer.
        """
        if self._head is not None:
            block = self._buf.next_block(MAX_BODY)
            if block is None:
                return self._closed_or_need_data()
            if block.overflow:
                raise RemoteProtocolError(Err("Answer too large"), fatal=True)
            head, self._head = self._head, None
            return Ok(head.text, block.content)
        line = self._buf.next_line(MAX_RESPONSE_LINE)
        if line is None:
            return self._closed_or_need_data()
        if line is TOO_LONG or not self._awaiting:
            raise RemoteProtocolError(Err("Unexpected answer from server"), fatal=True)
        assert isinstance(line, bytes)
        text = line.decode("utf-8", "replace")
        command = self._awaiting.popleft()
        if text.startswith("+OK"):
            ok = Ok(text[4:])
            if _multiline(command):
                self._head = ok
                return self.next_event()
            return ok
        if text.startswith("-ERR"):
            rest = text[5:]
            code = None
            if rest.startswith("[") and "]" in rest:
                code, rest = rest[1 : rest.index("]")], rest[rest.index("]") + 1 :].lstrip()
            return Err(rest, code)
        if text.startswith("+") and isinstance(command, Auth | AuthResponse):
            return Continue(text[2:])
        raise RemoteProtocolError(Err(f"Not a POP3 answer: {text[:40]!r}"), fatal=True)

    def _closed_or_need_data(self) -> ConnectionClosed | NeedData:
        return ConnectionClosed() if self._eof else NEED_DATA
