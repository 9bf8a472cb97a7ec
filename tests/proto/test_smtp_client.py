"""The SMTP client machine, alone and talking to the server machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.smtp_client import NEED_DATA, SmtpClientConnection, extensions, mail_command
from netlab.proto.smtp_events import (
    ConnectionClosed,
    Data,
    Hello,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
)
from tests.proto.test_smtp_server import Session


def _replies(client: SmtpClientConnection) -> list[Reply]:
    out = []
    while isinstance(event := client.next_event(), Reply):
        out.append(event)
    return out


def test_multiline_reply_and_enhanced_codes() -> None:
    client = SmtpClientConnection()
    client.receive_data(b"220 mx ESMTP\r\n")
    assert _replies(client) == [Reply(220, "mx ESMTP")]
    client.send(Hello("me"))
    client.receive_data(b"250-mx greets me\r\n250-SIZE 1000\r\n250 PIPELINING\r\n")
    (ehlo,) = _replies(client)
    assert extensions(ehlo) == {"SIZE": "1000", "PIPELINING": ""}
    client.send(MailFrom("a@b.test"))
    client.receive_data(b"550-5.1.0 first\r\n550 5.1.0 second\r\n")
    assert _replies(client) == [Reply(550, "first\nsecond", "5.1.0")]


@pytest.mark.parametrize(
    "garbage", [b"hello\r\n", b"25 short\r\n", b"250-a\r\n251 b\r\n", b"x" * 5000 + b"\r\n"]
)
def test_garbage_from_the_server(garbage: bytes) -> None:
    client = SmtpClientConnection()
    client.receive_data(garbage)
    with pytest.raises(RemoteProtocolError) as info:
        _replies(client)
    assert info.value.reply.code == 451  # a temporary failure for the relay


def test_unsolicited_reply() -> None:
    client = SmtpClientConnection()
    client.receive_data(b"220 hi\r\n250 what\r\n")
    with pytest.raises(RemoteProtocolError):
        _replies(client)


def test_content_only_after_354() -> None:
    client = SmtpClientConnection()
    with pytest.raises(LocalProtocolError):
        client.send(MessageData(b"x\r\n"))
    client.receive_data(b"220 hi\r\n")
    client.send(Data())
    client.receive_data(b"354 go\r\n")
    _replies(client)
    assert client.send(MessageData(b".x\r\n")) == b"..x\r\n.\r\n"


def test_eof() -> None:
    client = SmtpClientConnection()
    client.receive_data(b"")
    assert isinstance(client.next_event(), ConnectionClosed)


@given(st.binary(max_size=500).map(lambda b: b.replace(b"\0", b"")))
def test_client_and_server_machines_agree(content: bytes) -> None:
    """A pipelined envelope and any content go through both machines unchanged."""
    client = SmtpClientConnection()
    server = Session(max_message_size=10_000)
    client.receive_data(server.wire)
    assert client.next_event() == Reply(220, "mx.test ESMTP")
    server.wire = b""
    server.feed(
        client.send(Hello("me")) + client.send(MailFrom("a@b.test")) + client.send(RcptTo("c@d.test"))
    )
    server.feed(client.send(Data()))
    client.receive_data(server.wire)
    assert [r.code for r in _replies(client)] == [250, 250, 250, 354]
    server.wire = b""
    server.feed(client.send(MessageData(content)) + client.send(Quit()))
    client.receive_data(server.wire)
    assert [r.code for r in _replies(client)] == [250, 221]
    sent = server.events[-2]
    assert isinstance(sent, MessageData)
    assert sent.content == (content if not content or content.endswith(b"\r\n") else content + b"\r\n")
    assert client.next_event() is NEED_DATA


ASCII = b"Subject: hi\r\n\r\nbody\r\n"
EIGHT_BIT_BODY = "Subject: hi\r\n\r\nGrüße\r\n".encode()
UTF8_HEADER = "Subject: Grüße\r\n\r\nbody\r\n".encode()
ALL = {"SIZE": "1000000", "8BITMIME": "", "SMTPUTF8": ""}
OLD = {"SIZE": "1000000"}  # neither 8BITMIME nor SMTPUTF8


@pytest.mark.parametrize(
    ("ext", "rcpt", "wire", "expected"),
    [
        (ALL, "b@b.test", ASCII, MailFrom("a@a.test", size=len(ASCII))),
        ({}, "b@b.test", ASCII, MailFrom("a@a.test")),
        (ALL, "b@b.test", EIGHT_BIT_BODY, MailFrom("a@a.test", size=len(EIGHT_BIT_BODY), body="8BITMIME")),
        (
            ALL,
            "b@b.test",
            UTF8_HEADER,
            MailFrom("a@a.test", size=len(UTF8_HEADER), body="8BITMIME", smtputf8=True),
        ),
        (ALL, "jürgen@b.test", ASCII, MailFrom("a@a.test", size=len(ASCII), smtputf8=True)),
        # RFC 6152 section 3, RFC 6531 section 3.2: not to a server that cannot take it.
        (OLD, "b@b.test", EIGHT_BIT_BODY, Reply(554, "x", "5.6.3")),
        ({"8BITMIME": ""}, "b@b.test", UTF8_HEADER, Reply(550, "x", "5.6.9")),
        ({"8BITMIME": ""}, "jürgen@b.test", ASCII, Reply(553, "x", "5.6.7")),
        (OLD, "jürgen@b.test", EIGHT_BIT_BODY, Reply(553, "x", "5.6.7")),
        (OLD, "b@b.test", b"\r\nno headers, 8-bit \xff body\r\n", Reply(554, "x", "5.6.3")),
    ],
)
def test_mail_command_declares_what_the_message_needs(
    ext: dict[str, str], rcpt: str, wire: bytes, expected: MailFrom | Reply
) -> None:
    got = mail_command(ext, "a@a.test", [rcpt], wire)
    if isinstance(expected, Reply):
        assert isinstance(got, Reply)
        assert (got.code, got.enhanced) == (expected.code, expected.enhanced)
    else:
        assert got == expected
