"""The server side of SMTP (RFC 5321) as a sans-I/O machine.

Strategy: the machine parses the client's bytes into command events, one at a time, and the
driver answers each with a :class:`Reply` through :meth:`SmtpServerConnection.send`.  The reply
moves the state: one table, :data:`TRANSITIONS`, maps (state, command) to the state each class of
reply (2yz, 3yz, 4yz, 5yz) leads to.  A command with no entry for the current state is out of
sequence and refused with 503 (RFC 5321 section 4.1.4) without the driver seeing it; the same
goes for syntax errors, over-long lines and over-size messages.  These refusals are raised as
:class:`RemoteProtocolError` carrying the reply, and the driver sends that reply with the same
``send`` call, so replies always leave in command order.

Pipelining (RFC 2920) falls out of this shape: every command already buffered is handed out
one after another, and a driver that sends its replies once :data:`NEED_DATA` comes back
answers a whole group in one write.  The machine refuses to hand out the next command before
the current one has its reply, because that reply decides how the next bytes are read (a 354
turns them into message content, a 220 to STARTTLS discards them).
"""

from __future__ import annotations

import enum
from typing import NoReturn

from netlab.proto.mail_lines import NEED_DATA, TOO_LONG, NeedData, ReceiveBuffer
from netlab.proto.smtp_commands import parse_command_untrusted
from netlab.proto.smtp_events import (
    Auth,
    AuthResponse,
    ConnectionClosed,
    Data,
    Event,
    Hello,
    Help,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    Vrfy,
)

__all__ = [
    "MAX_AUTH_LINE",
    "MAX_COMMAND_LINE",
    "NEED_DATA",
    "TRANSITIONS",
    "NeedData",
    "SmtpServerConnection",
    "State",
]

#: Longest command line we read, CRLF included.  RFC 5321 section 4.5.3.1.4 sets 512 and lets
#: extensions raise it (SIZE, AUTH= and SMTPUTF8 addresses all lengthen MAIL); 2048 is Postfix's.
MAX_COMMAND_LINE = 2048
#: Longest SASL response line (RFC 4954 section 4).
MAX_AUTH_LINE = 12288
#: After this many refused commands the session is ended with 421 (Postfix's hard error limit).
MAX_ERRORS = 20


class State(enum.Enum):
    GREETING = "greeting"  # connected; our 220 has not been sent
    CONNECTED = "connected"  # waiting for HELO/EHLO
    READY = "ready"  # greeted, no mail transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading message content
    AUTH = "auth"  # in a SASL exchange (RFC 4954)
    CLOSED = "closed"


_S = State
_SESSION = (_S.READY, _S.MAIL, _S.RCPT)


def _stay(state: State) -> dict[int, State]:
    return {2: state, 4: state, 5: state}


def _build() -> dict[tuple[State, type[Event]], dict[int, State]]:
    table: dict[tuple[State, type[Event]], dict[int, State]] = {}
    for s in (_S.CONNECTED, *_SESSION):
        for kind in (Noop, Vrfy, Help):
            table[s, kind] = _stay(s)
        table[s, Quit] = {2: _S.CLOSED}
        # RSET aborts the transaction but not the greeting (RFC 5321 section 4.1.1.5).
        table[s, Rset] = {2: _S.CONNECTED if s is _S.CONNECTED else _S.READY}
        # EHLO in the middle of a transaction also resets it (section 4.1.4).
        table[s, Hello] = {2: _S.READY, 4: s, 5: s}
    table[_S.READY, MailFrom] = {2: _S.MAIL, 4: _S.READY, 5: _S.READY}
    table[_S.MAIL, RcptTo] = {2: _S.RCPT, 4: _S.MAIL, 5: _S.MAIL}
    table[_S.RCPT, RcptTo] = _stay(_S.RCPT)
    table[_S.RCPT, Data] = {3: _S.DATA, 4: _S.RCPT, 5: _S.RCPT}
    table[_S.DATA, MessageData] = {2: _S.READY, 4: _S.READY, 5: _S.READY}
    # After TLS starts the client must say EHLO again (RFC 3207 section 4.2).
    table[_S.READY, StartTls] = {2: _S.CONNECTED, 4: _S.READY, 5: _S.READY}
    table[_S.READY, Auth] = {2: _S.READY, 3: _S.AUTH, 4: _S.READY, 5: _S.READY}
    table[_S.AUTH, AuthResponse] = {2: _S.READY, 3: _S.AUTH, 4: _S.READY, 5: _S.READY}
    return table


#: (state, command) -> {reply class: next state}.  A missing key is a command out of sequence; a
#: missing reply class is a reply the driver may not give to that command.
TRANSITIONS = _build()


def _out_of_sequence(state: State, event: Event) -> Reply:
    """The 503 (or 554) refusing ``event`` in ``state``, saying what was expected."""
    if state is _S.CONNECTED:
        return Reply(503, "Send EHLO or HELO first", "5.5.1")
    if isinstance(event, MailFrom):
        return Reply(503, "Nested MAIL command", "5.5.1")
    if isinstance(event, RcptTo | Data) and state is _S.READY:
        return Reply(503, "Need MAIL command", "5.5.1")
    if isinstance(event, Data):
        # RFC 5321 section 3.3: all RCPTs refused (or none given) may be answered 554.
        return Reply(554, "No valid recipients", "5.5.1")
    if isinstance(event, Auth | StartTls):
        # RFC 4954 section 4 and RFC 3207 section 4: not inside a mail transaction.
        return Reply(503, "Not allowed during a mail transaction", "5.5.1")
    return Reply(503, "Bad sequence of commands", "5.5.1")


class SmtpServerConnection:
    """One SMTP session, server side.

    Args:
        max_message_size: the SIZE limit in octets (RFC 1870); bigger messages get 552.
        max_errors: refused commands tolerated before the session is ended with 421.
    """

    def __init__(self, *, max_message_size: int, max_errors: int = MAX_ERRORS) -> None:
        self.max_message_size = max_message_size
        self.max_errors = max_errors
        self.state = State.GREETING
        self.errors = 0
        self._buf = ReceiveBuffer()
        self._eof = False
        self._pending: Event | None = None
        self._refused_next: State | None = None  # set while a refusal awaits its reply
        self._utf8 = False  # the current transaction announced SMTPUTF8

    # -- input ---------------------------------------------------------------------------------

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
        """The next command (or message content), or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the input is refused; send ``exc.reply``.  If ``exc.fatal``,
                close after sending it.
            LocalProtocolError: the previous event has not been answered yet.
        """
        if self._pending is not None or self._refused_next is not None:
            raise LocalProtocolError("reply to the previous command first")
        if self.state in (_S.GREETING, _S.CLOSED):
            raise LocalProtocolError(f"no commands are read in state {self.state.name}")
        if self.errors >= self.max_errors:
            self._refused_next = _S.CLOSED
            raise RemoteProtocolError(Reply(421, "Too many errors, closing", "4.7.0"), fatal=True)
        if self.state is _S.DATA:
            return self._next_message()
        limit = MAX_AUTH_LINE if self.state is _S.AUTH else MAX_COMMAND_LINE
        line = self._buf.next_line(limit)
        if line is None:
            return self._closed_or_need_data()
        if line is TOO_LONG:
            self._refuse(Reply(500, "Line too long (RFC 5321 section 4.5.3.1.4)", "5.5.2"))
        assert isinstance(line, bytes)
        if self.state is _S.AUTH:
            self._pending = AuthResponse(line.decode("ascii", "replace"))
            return self._pending
        try:
            event = parse_command_untrusted(line, utf8=self._utf8)
        except RemoteProtocolError as exc:
            self._refuse(exc.reply)
        if (self.state, type(event)) not in TRANSITIONS:
            self._refuse(_out_of_sequence(self.state, event))
        if isinstance(event, MailFrom) and event.size is not None and event.size > self.max_message_size:
            # RFC 1870 section 6.2: refuse at MAIL when the declared size is already too big.
            self._refuse(Reply(552, "Message size exceeds fixed maximum message size", "5.3.4"))
        self._pending = event
        return event

    def _next_message(self) -> Event | NeedData:
        # Keep at most twice the limit: stuffing can only add one octet per line, and the exact
        # RFC 1870 size (unstuffed) is checked once the message is complete.
        block = self._buf.next_block(2 * self.max_message_size + 1024)
        if block is None:
            return self._closed_or_need_data()
        if block.overflow or len(block.content) > self.max_message_size:
            # RFC 1870 section 6.3: the whole message is refused and nothing of it kept.
            self._refuse(Reply(552, "Message size exceeds fixed maximum message size", "5.3.4"), _S.READY)
        if b"\0" in block.content:
            # RFC 5322 section 2.1 (and RFC 6152 for 8BITMIME): no NUL in a message.
            self._refuse(Reply(554, "Message contains NUL bytes", "5.6.0"), _S.READY)
        self._pending = MessageData(block.content)
        return self._pending

    def _closed_or_need_data(self) -> Event | NeedData:
        if self._eof:
            # Whatever partial line or message is buffered dies with the connection.
            self.state = _S.CLOSED
            return ConnectionClosed()
        return NEED_DATA

    def _refuse(self, reply: Reply, next_state: State | None = None) -> NoReturn:
        self._refused_next = next_state or self.state
        raise RemoteProtocolError(reply)

    # -- output --------------------------------------------------------------------------------

    def send(self, event: Reply) -> bytes:
        """The bytes of ``event``, the reply to the pending command (or the greeting).

        Raises:
            LocalProtocolError: there is nothing to reply to, or the reply does not fit it.
        """
        if not isinstance(event, Reply):
            raise LocalProtocolError(f"a server sends replies, not {type(event).__name__}")
        if event.code == 421:
            # Service closing (RFC 5321 section 3.8): allowed at any time, ends the session.
            self.state = _S.CLOSED
        elif self.state is _S.GREETING:
            if event.code != 220:
                raise LocalProtocolError("the greeting is a 220 (or 421) reply")
            self.state = _S.CONNECTED
        elif self._refused_next is not None:
            if event.positive:
                raise LocalProtocolError("a refusal needs a 4yz or 5yz reply")
            self.state = self._refused_next
        elif self._pending is None:
            raise LocalProtocolError("no command is waiting for a reply")
        else:
            command = self._pending
            outcomes = TRANSITIONS[self.state, type(command)]
            if event.code // 100 not in outcomes:
                raise LocalProtocolError(
                    f"{event.code} is not a reply to {type(command).__name__} in state {self.state.name}"
                )
            new = outcomes[event.code // 100]
            if isinstance(command, MailFrom) and new is _S.MAIL:
                # SMTPUTF8 on MAIL lets the RCPTs of this transaction be UTF-8 (RFC 6531 3.4).
                self._utf8 = command.smtputf8
            if isinstance(command, StartTls) and new is _S.CONNECTED:
                # RFC 3207 section 4.2: anything the client sent after STARTTLS in plaintext is
                # discarded, or an attacker could inject commands into the TLS session.
                self._buf.clear()
            self.state = new
        if self.state not in (_S.MAIL, _S.RCPT, _S.DATA):
            self._utf8 = False
        if event.code >= 400:
            self.errors += 1
        self._pending = None
        self._refused_next = None
        return event.encode()
