"""The SMTP server machine: sequencing, limits, pipelining, DATA, every way the bytes are split."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from netlab.proto.smtp_server import NEED_DATA, TRANSITIONS, SmtpServerConnection, State


def accept_all(event: Event) -> Reply:
    """A driver that says yes to everything."""
    replies: dict[type[Event], Reply] = {
        Hello: Reply(250, "mx.test"),
        MailFrom: Reply(250, "Ok", "2.1.0"),
        RcptTo: Reply(250, "Ok", "2.1.5"),
        Data: Reply(354, "Go ahead"),
        MessageData: Reply(250, "Ok: queued", "2.0.0"),
        Rset: Reply(250, "Ok", "2.0.0"),
        Noop: Reply(250, "Ok", "2.0.0"),
        Quit: Reply(221, "Bye", "2.0.0"),
        Vrfy: Reply(252, "Maybe", "2.5.0"),
        Help: Reply(214, "Help", "2.0.0"),
        StartTls: Reply(220, "Go", "2.0.0"),
        Auth: Reply(334, ""),
        AuthResponse: Reply(235, "Ok", "2.7.0"),
    }
    return replies[type(event)]


class Session:
    """Feeds bytes to a server machine and answers every event like a driver would."""

    def __init__(
        self, policy: Callable[[Event], Reply] = accept_all, *, max_message_size: int = 1000
    ) -> None:
        self.conn = SmtpServerConnection(max_message_size=max_message_size)
        self.policy = policy
        self.events: list[Event] = []
        self.codes: list[int] = []
        self.wire = self.conn.send(Reply(220, "mx.test ESMTP"))

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while not self.conn.closed:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.codes.append(exc.reply.code)
                self.wire += self.conn.send(exc.reply)
                continue
            if event is NEED_DATA:
                return
            self.events.append(event)
            if isinstance(event, ConnectionClosed):
                return
            reply = self.policy(event)
            self.codes.append(reply.code)
            self.wire += self.conn.send(reply)


def codes(lines: list[str]) -> list[int]:
    s = Session()
    s.feed(b"".join(line.encode() + b"\r\n" for line in lines))
    return s.codes


CASES = [
    ("mail before helo", ["MAIL FROM:<a@b.test>"], [503]),
    ("rcpt before mail", ["EHLO c", "RCPT TO:<a@b.test>"], [250, 503]),
    ("data without mail", ["EHLO c", "DATA"], [250, 503]),
    ("data without rcpt", ["EHLO c", "MAIL FROM:<a@b.test>", "DATA"], [250, 250, 554]),
    ("nested mail", ["EHLO c", "MAIL FROM:<a@b.test>", "MAIL FROM:<a@b.test>"], [250, 250, 503]),
    (
        "rset ends the transaction",
        ["EHLO c", "MAIL FROM:<>", "RSET", "RCPT TO:<a@b.test>"],
        [250, 250, 250, 503],
    ),
    (
        "ehlo ends the transaction",
        ["EHLO c", "MAIL FROM:<>", "EHLO c", "RCPT TO:<a@b.test>"],
        [250, 250, 250, 503],
    ),
    ("auth inside a transaction", ["EHLO c", "MAIL FROM:<>", "AUTH PLAIN"], [250, 250, 503]),
    ("starttls before ehlo", ["STARTTLS"], [503]),
    ("noop, vrfy, help, rset before helo", ["NOOP", "VRFY x", "HELP", "RSET"], [250, 252, 214, 250]),
    ("unknown command", ["EHLO c", "FOO bar"], [250, 500]),
    ("expn is not implemented", ["EHLO c", "EXPN list"], [250, 502]),
    ("missing brackets", ["EHLO c", "MAIL FROM:a@b.test"], [250, 501]),
    ("bad address", ["EHLO c", "MAIL FROM:<a@@b>"], [250, 501]),
    ("unknown MAIL parameter", ["EHLO c", "MAIL FROM:<a@b.test> FOO=1"], [250, 555]),
    (
        "RCPT parameter",
        ["EHLO c", "MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test> NOTIFY=NEVER"],
        [250, 250, 555],
    ),
    ("declared size too big", ["EHLO c", "MAIL FROM:<a@b.test> SIZE=1001"], [250, 552]),
    ("declared size fits", ["EHLO c", "MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME"], [250, 250]),
    ("helo without a name", ["HELO"], [501]),
    (
        "data with an argument",
        ["EHLO c", "MAIL FROM:<>", "RCPT TO:<a@b.test>", "DATA x"],
        [250, 250, 250, 501],
    ),
    ("utf-8 address without SMTPUTF8", ["EHLO c", "MAIL FROM:<jö@b.test>"], [250, 553]),
    (
        "utf-8 with SMTPUTF8",
        ["EHLO c", "MAIL FROM:<jö@b.test> SMTPUTF8", "RCPT TO:<ü@d.test>"],
        [250, 250, 250],
    ),
    (
        "utf-8 RCPT needs SMTPUTF8 on MAIL",
        ["EHLO c", "MAIL FROM:<a@b.test>", "RCPT TO:<ü@d.test>"],
        [250, 250, 553],
    ),
    ("postmaster without domain", ["EHLO c", "MAIL FROM:<>", "RCPT TO:<Postmaster>"], [250, 250, 250]),
    ("source route is ignored", ["EHLO c", "MAIL FROM:<@relay.test:a@b.test>"], [250, 250]),
    ("address literal", ["EHLO c", "MAIL FROM:<a@[127.0.0.1]>", "RCPT TO:<b@[IPv6:::1]>"], [250, 250, 250]),
    ("bad address literal", ["EHLO c", "MAIL FROM:<a@[300.1.1.1]>"], [250, 501]),
    ("quit", ["QUIT", "NOOP"], [221]),
]


@pytest.mark.parametrize(("lines", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_command_sequences(lines: list[str], expected: list[int]) -> None:
    assert codes(lines) == expected


def test_a_whole_transaction_pipelined_in_one_read() -> None:
    s = Session()
    s.feed(
        b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=20\r\nRCPT TO:<c@d.test>\r\n"
        b"RCPT TO:<e@f.test>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
    )
    assert s.events == [
        Hello("client.test"),
        MailFrom("a@b.test", size=20),
        RcptTo("c@d.test"),
        RcptTo("e@f.test"),
        Data(),
        MessageData(b"Subject: x\r\n\r\n.dot\r\n"),
        Quit(),
    ]
    assert s.codes == [250, 250, 250, 250, 354, 250, 221]
    assert s.conn.closed


def test_next_event_waits_for_the_reply() -> None:
    conn = SmtpServerConnection(max_message_size=100)
    conn.send(Reply(220, "hi"))
    conn.receive_data(b"EHLO a\r\nNOOP\r\n")
    assert conn.next_event() == Hello("a")
    with pytest.raises(LocalProtocolError):
        conn.next_event()


@pytest.mark.parametrize(
    ("state_lines", "reply"),
    [
        (["NOOP"], Reply(354, "no")),  # 354 answers only DATA
        (["QUIT"], Reply(550, "no", "5.0.0")),  # QUIT is always accepted
    ],
)
def test_replies_that_do_not_fit_are_refused(state_lines: list[str], reply: Reply) -> None:
    conn = SmtpServerConnection(max_message_size=100)
    conn.send(Reply(220, "hi"))
    conn.receive_data(b"".join(line.encode() + b"\r\n" for line in state_lines))
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(reply)


def test_greeting_must_be_220() -> None:
    conn = SmtpServerConnection(max_message_size=100)
    with pytest.raises(LocalProtocolError):
        conn.send(Reply(250, "hi"))
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_message_over_size_is_refused_and_nothing_kept() -> None:
    s = Session(max_message_size=100)
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    s.feed(b"x" * 60 + b"\r\n" + b"y" * 60 + b"\r\n.\r\n")
    s.feed(b"RCPT TO:<c@d.test>\r\nNOOP\r\n")
    assert s.codes == [250, 250, 250, 354, 552, 503, 250]
    assert not any(isinstance(e, MessageData) for e in s.events)


def test_huge_message_memory_stays_bounded() -> None:
    s = Session(max_message_size=1000)
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    for _ in range(1000):
        s.feed(b"z" * 998 + b"\r\n")
        assert len(s.conn._buf) < 4000
    s.feed(b".\r\n")
    assert s.codes[-1] == 552


def test_dot_stuffed_size_counts_unstuffed() -> None:
    # 100 lines of ".." are 400 octets on the wire but 300 once unstuffed (RFC 1870 counts those).
    s = Session(max_message_size=300)
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" + b"..\r\n" * 100 + b".\r\n")
    assert s.codes[-1] == 250
    assert s.events[-1] == MessageData(b".\r\n" * 100)


def test_nul_bytes() -> None:
    s = Session()
    s.feed(b"EHLO c\r\nNO\0OP\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\na\0b\r\n.\r\nNOOP\r\n")
    assert s.codes == [250, 500, 250, 250, 354, 554, 250]


def test_overlong_command_line() -> None:
    s = Session()
    s.feed(b"EHLO c\r\nNOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert s.codes == [250, 500, 250]
    assert b"500 5.5.2 Line too long" in s.wire


def test_plaintext_after_starttls_is_discarded() -> None:
    """RFC 3207 section 4.2: commands injected after STARTTLS must not run inside TLS."""
    s = Session()
    s.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert s.codes == [250, 220]
    assert s.conn.state is State.CONNECTED
    s.feed(b"EHLO c\r\n")
    assert s.codes == [250, 220, 250]


def test_auth_continuation_lines() -> None:
    s = Session()
    s.feed(b"EHLO c\r\nAUTH LOGIN\r\ndXNlcg==\r\n")
    assert s.events[-1] == AuthResponse("dXNlcg==")
    assert s.conn.state is State.READY


def test_too_many_errors_end_the_session() -> None:
    s = Session()
    s.feed(b"BAD\r\n" * 30)
    assert s.codes == [500] * 20 + [421]
    assert s.conn.closed
    assert s.wire.endswith(b"421 4.7.0 Too many errors, closing\r\n")


def test_eof_in_the_middle_of_a_message_stores_nothing() -> None:
    s = Session()
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\npartial\r\n")
    s.feed(b"")
    assert isinstance(s.events[-1], ConnectionClosed)
    assert not any(isinstance(e, MessageData) for e in s.events)
    assert s.conn.closed


def test_421_ends_the_session_at_any_time() -> None:
    conn = SmtpServerConnection(max_message_size=100)
    conn.send(Reply(220, "hi"))
    assert conn.send(Reply(421, "bye", "4.4.2")) == b"421 4.4.2 bye\r\n"
    assert conn.closed


def test_multiline_reply_repeats_the_enhanced_code() -> None:
    assert Reply(250, "a\nb", "2.0.0").encode() == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"
    with pytest.raises(LocalProtocolError):
        Reply(250, "x", "5.0.0")


def test_transition_table_targets_are_states() -> None:
    for (state, kind), outcomes in TRANSITIONS.items():
        assert isinstance(state, State)
        assert issubclass(kind, Event)
        assert set(outcomes) <= {2, 3, 4, 5}
        assert all(isinstance(s, State) for s in outcomes.values())


SESSION = (
    b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=50\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    b"Subject: hi\r\n\r\n..\r\n...\r\nline\r\n.\r\nRSET\r\nBOGUS\r\nVRFY x\r\nMAIL FROM:<>\r\n"
    b"RCPT TO:<e@f.test>\r\nDATA\r\n.\r\nQUIT\r\n"
)


@settings(max_examples=300)
@given(st.lists(st.integers(1, 30), max_size=60))
def test_chunking_invariance(cuts: list[int]) -> None:
    """The same events and replies however the client's bytes are split."""
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
    assert whole.codes == [250, 250, 250, 354, 250, 250, 500, 252, 250, 250, 354, 250, 221]
