"""The POP3 machines (server and client) and the maildrop view."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.proto.pop3 import NEED_DATA, TRANSITIONS, Pop3ServerConnection, State
from netlab.proto.pop3_client import Pop3ClientConnection, format_command
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
from netlab.proto.pop3_maildrop import MaildropView, MessageInfo, apop_digest, top_of

MESSAGES = [MessageInfo("uid-a", 120, "a"), MessageInfo("uid-b", 200, "b"), MessageInfo("uid-c", 5, "c")]
BODY = b"Subject: x\r\n\r\n.hidden dot\r\nline 2\r\n"


def simple_server(view: MaildropView) -> Callable[[Event], Ok | Err | Continue]:
    def answer(event: Event) -> Ok | Err | Continue:
        match event:
            case User():
                return Ok("send PASS")
            case Pass(password):
                return Ok("in") if password == "pw" else Err("no", "AUTH")
            case Apop() | Capa():
                return Ok("caps", b"TOP\r\nUIDL\r\n") if isinstance(event, Capa) else Err("no")
            case Auth():
                return Continue("")
            case AuthResponse():
                return Ok("in")
            case Stls():
                return Ok("go")
            case Stat():
                return view.stat()
            case List(which):
                return view.sizes(which)
            case Uidl(which):
                return view.uids(which)
            case Dele(which):
                return view.dele(which)
            case Rset():
                return view.rset()
            case Retr(which) | Top(which, _):
                found = view.message(which)
                if isinstance(found, Err):
                    return found
                return Ok("follows", BODY if isinstance(event, Retr) else top_of(BODY, event.lines))
            case Noop() | Quit():
                return Ok()
        raise AssertionError(event)

    return answer


class Session:
    def __init__(self) -> None:
        self.conn = Pop3ServerConnection()
        self.view = MaildropView(MESSAGES)
        self.answer = simple_server(self.view)
        self.events: list[Event] = []
        self.wire = self.conn.send(Ok("ready <1.2@host>"))

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while not self.conn.closed:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.wire += self.conn.send(exc.reply)
                continue
            if event is NEED_DATA:
                return
            self.events.append(event)
            if isinstance(event, ConnectionClosed):
                return
            self.wire += self.conn.send(self.answer(event))


def statuses(lines: list[str]) -> list[str]:
    s = Session()
    s.feed(b"".join(line.encode() + b"\r\n" for line in lines))
    return [line.split(" ")[0] for line in s.wire.decode().split("\r\n")[1:] if line.startswith(("+", "-"))]


CASES = [
    ("pass before user", ["PASS pw"], ["-ERR"]),
    ("stat before login", ["STAT"], ["-ERR"]),
    (
        "bad password then retry",
        ["USER u", "PASS no", "PASS pw", "USER u", "PASS pw"],
        ["+OK", "-ERR", "-ERR", "+OK", "+OK"],
    ),
    ("user after login", ["USER u", "PASS pw", "USER u"], ["+OK", "+OK", "-ERR"]),
    ("stls after login", ["USER u", "PASS pw", "STLS"], ["+OK", "+OK", "-ERR"]),
    ("unknown", ["XYZZY"], ["-ERR"]),
    ("missing argument", ["USER"], ["-ERR"]),
    (
        "bad number",
        ["USER u", "PASS pw", "RETR x", "RETR 0", "DELE -1"],
        ["+OK", "+OK", "-ERR", "-ERR", "-ERR"],
    ),
    ("no such message", ["USER u", "PASS pw", "RETR 9", "LIST 4"], ["+OK", "+OK", "-ERR", "-ERR"]),
    (
        "dele twice",
        ["USER u", "PASS pw", "DELE 1", "DELE 1", "RETR 1"],
        ["+OK", "+OK", "+OK", "-ERR", "-ERR"],
    ),
    ("noop only in transaction", ["NOOP"], ["-ERR"]),
    ("quit in authorization", ["QUIT", "NOOP"], ["+OK"]),
    ("auth exchange", ["AUTH PLAIN", "AHUAcHc=", "STAT"], ["+", "+OK", "+OK"]),
    ("capa in both states", ["CAPA", "USER u", "PASS pw", "CAPA"], ["+OK", "+OK", "+OK", "+OK"]),
]


@pytest.mark.parametrize(("lines", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_command_sequences(lines: list[str], expected: list[str]) -> None:
    assert statuses(lines) == expected


def test_transaction_listing_and_deletion_marks() -> None:
    s = Session()
    s.feed(b"USER u\r\nPASS pw\r\nSTAT\r\nDELE 2\r\nSTAT\r\nLIST\r\nUIDL 3\r\nRSET\r\nSTAT\r\n")
    text = s.wire.decode()
    assert "+OK 3 325\r\n" in text
    assert "+OK 2 125\r\n" in text
    assert "+OK 2 messages\r\n1 120\r\n3 5\r\n.\r\n" in text
    assert "+OK 3 uid-c\r\n" in text
    assert text.endswith("+OK 3 325\r\n")


def test_retr_is_byte_stuffed_and_top_cuts_the_body() -> None:
    s = Session()
    s.feed(b"USER u\r\nPASS pw\r\nRETR 1\r\nTOP 1 0\r\nTOP 1 1\r\n")
    text = s.wire.decode()
    assert "+OK follows\r\nSubject: x\r\n\r\n..hidden dot\r\nline 2\r\n.\r\n" in text
    assert "+OK follows\r\nSubject: x\r\n\r\n.\r\n" in text
    assert text.endswith("+OK follows\r\nSubject: x\r\n\r\n..hidden dot\r\n.\r\n")


def test_deletions_are_handed_over_only_for_quit() -> None:
    view = MaildropView(MESSAGES)
    view.dele(1)
    view.dele(3)
    assert [m.key for m in view.deleted()] == ["a", "c"]


def test_plaintext_after_stls_is_discarded() -> None:
    s = Session()
    s.feed(b"STLS\r\nUSER injected\r\n")
    assert s.events == [Stls()]
    assert s.conn.state is State.AUTHORIZATION


def test_pass_keeps_spaces() -> None:
    s = Session()
    s.feed(b"USER u\r\nPASS two words \r\n")
    assert s.events[-1] == Pass("two words ")


def test_overlong_line_and_too_many_errors() -> None:
    s = Session()
    s.feed(b"USER " + b"x" * 1000 + b"\r\n")
    assert s.wire.endswith(b"-ERR Line too long\r\n")
    s.feed(b"BAD\r\n" * 25)
    assert s.conn.closed
    assert s.wire.endswith(b"-ERR Too many errors\r\n")


def test_eof_closes_without_update() -> None:
    s = Session()
    s.feed(b"USER u\r\nPASS pw\r\nDELE 1\r\n")
    s.feed(b"")
    assert isinstance(s.events[-1], ConnectionClosed)
    assert s.conn.closed


def test_answer_must_fit() -> None:
    conn = Pop3ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(Err("no greeting"))
    conn.send(Ok("hi"))
    conn.receive_data(b"STAT\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Ok("a refusal is an -ERR"))


def test_transition_table_targets_are_states() -> None:
    for (state, kind), outcomes in TRANSITIONS.items():
        assert isinstance(state, State)
        assert issubclass(kind, Event)
        assert set(outcomes) <= {"ok", "err", "more"}


SESSION = (
    b"CAPA\r\nUSER u\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR 2\r\nDELE 1\r\nUIDL\r\nTOP 3 1\r\nRSET\r\nQUIT\r\n"
)


@settings(max_examples=200)
@given(st.lists(st.integers(1, 20), max_size=40))
def test_chunking_invariance(cuts: list[int]) -> None:
    whole = Session()
    whole.feed(SESSION)
    split = Session()
    pos = 0
    for size in cuts:
        split.feed(SESSION[pos : pos + size])
        pos += size
    split.feed(SESSION[pos:])
    assert split.events == whole.events
    assert split.wire == whole.wire


@settings(max_examples=100)
@given(st.lists(st.integers(1, 25), max_size=40))
def test_client_reads_what_the_server_writes(cuts: list[int]) -> None:
    """The client machine recovers every answer, unstuffed, however the bytes arrive."""
    server = Session()
    client = Pop3ClientConnection()
    commands: list[Event] = [
        Capa(),
        User("u"),
        Pass("pw"),
        List(),
        Retr(1),
        Uidl(2),
        Top(1, 0),
        Dele(9),
        Quit(),
    ]
    server.feed(b"".join(client.send(c) for c in commands))
    wire, pos, answers = server.wire, 0, []
    for size in [*cuts, len(wire)]:
        client.receive_data(wire[pos : pos + size])
        pos += size
        while not isinstance(event := client.next_event(), type(NEED_DATA)) and not isinstance(
            event, ConnectionClosed
        ):
            answers.append(event)
    assert len(answers) == 1 + len(commands)
    assert answers[1] == Ok("caps", b"TOP\r\nUIDL\r\n")
    assert answers[4] == Ok("3 messages", b"1 120\r\n2 200\r\n3 5\r\n")
    assert answers[5] == Ok("follows", BODY)
    assert answers[6] == Ok("2 uid-b")
    assert answers[8] == Err("No such message: 9")


def test_client_parses_response_codes_and_continuations() -> None:
    client = Pop3ClientConnection()
    client.receive_data(b"+OK hi\r\n")
    client.next_event()
    client.send(Pass("x"))
    client.send(Auth("PLAIN"))
    client.receive_data(b"-ERR [IN-USE] busy\r\n+ \r\n")
    assert client.next_event() == Err("busy", "IN-USE")
    assert client.next_event() == Continue("")


def test_format_command() -> None:
    assert format_command(Top(1, 5)) == b"TOP 1 5\r\n"
    assert format_command(List()) == b"LIST\r\n"
    assert format_command(Apop("mrose", "abc")) == b"APOP mrose abc\r\n"


def test_apop_digest_from_rfc1939() -> None:
    # RFC 1939 section 7, the example exchange.
    assert apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"
