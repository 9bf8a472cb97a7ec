"""The SMTP client driver against scripted servers (old-fashioned ones included), in memory."""

from __future__ import annotations

import base64

import pytest
import trio
import trio.testing

from netlab.aio.smtp_send import SendResult, SmtpSendError, send_message
from tests.mailtest import LineClient

Script = list[tuple[str, str]]  # (what the client must send, what the server answers)


async def scripted_server(stream: trio.abc.Stream, greeting: str, script: Script, seen: list[str]) -> None:
    peer = LineClient(stream)
    await stream.send_all(greeting.encode() + b"\r\n")
    for expected, answer in script:
        line = await peer.line()
        seen.append(line)
        assert line == expected, (line, expected)
        if answer:
            await stream.send_all(answer.encode() + b"\r\n")
    await stream.aclose()


async def run(
    nursery: trio.Nursery, script: Script, auth: tuple[str, str] | None = None
) -> tuple[SendResult, list[str]]:
    client, server = trio.testing.memory_stream_pair()
    seen: list[str] = []
    nursery.start_soon(scripted_server, server, "220 old.test SMTP", script, seen)
    result = await send_message(
        client,
        helo="me.test",
        sender="a@me.test",
        recipients=["b@old.test", "c@old.test"],
        content=b"Subject: hi\n\n.dot\n",
        tls="never",
        auth=auth,
    )
    return result, seen


async def test_helo_fallback_one_command_at_a_time(nursery: trio.Nursery) -> None:
    script = [
        ("EHLO me.test", "502 what?"),
        ("HELO me.test", "250 old.test"),
        ("MAIL FROM:<a@me.test>", "250 ok"),
        ("RCPT TO:<b@old.test>", "550 no such user"),
        ("RCPT TO:<c@old.test>", "250 ok"),
        ("DATA", "354 go"),
        ("Subject: hi", ""),
        ("", ""),
        ("..dot", ""),
        (".", "250 stored"),
        ("QUIT", "221 bye"),
    ]
    result, _ = await run(nursery, script)
    assert result.replies["b@old.test"].code == 550
    assert result.replies["c@old.test"].text == "stored"
    assert result.delivered() == ["c@old.test"]


async def test_every_recipient_refused_sends_no_data(nursery: trio.Nursery) -> None:
    script = [
        ("EHLO me.test", "250 old.test"),
        ("MAIL FROM:<a@me.test>", "250 ok"),
        ("RCPT TO:<b@old.test>", "550 no"),
        ("RCPT TO:<c@old.test>", "551 no"),
        ("QUIT", "221 bye"),
    ]
    result, seen = await run(nursery, script)
    assert "DATA" not in seen
    assert [r.code for r in result.replies.values()] == [550, 551]


async def test_auth_login_when_plain_is_not_offered(nursery: trio.Nursery) -> None:
    b64 = base64.b64encode
    script = [
        ("EHLO me.test", "250-old.test\r\n250 AUTH LOGIN"),
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(b"user").decode(), "334 UGFzc3dvcmQ6"),
        (b64(b"pw").decode(), "235 ok"),
        ("MAIL FROM:<a@me.test>", "250 ok"),
        ("RCPT TO:<b@old.test>", "250 ok"),
        ("RCPT TO:<c@old.test>", "250 ok"),
        ("DATA", "354 go"),
        ("Subject: hi", ""),
        ("", ""),
        ("..dot", ""),
        (".", "250 stored"),
        ("QUIT", "221 bye"),
    ]
    result, _ = await run(nursery, script, auth=("user", "pw"))
    assert [r.code for r in result.replies.values()] == [250, 250]


async def test_sender_refused_is_a_session_error(nursery: trio.Nursery) -> None:
    script = [("EHLO me.test", "250 old.test"), ("MAIL FROM:<a@me.test>", "553 5.7.1 go away")]
    with pytest.raises(SmtpSendError) as info:
        await run(nursery, script)
    assert info.value.reply.code == 553
    assert info.value.stage == "MAIL"


async def test_required_tls_not_offered(nursery: trio.Nursery) -> None:
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(scripted_server, server, "220 old.test", [("EHLO me.test", "250 old.test")], [])
    with pytest.raises(SmtpSendError, match="does not offer STARTTLS"):
        await send_message(
            client, helo="me.test", sender="", recipients=["b@old.test"], content=b"x\n", tls="required"
        )


@pytest.mark.parametrize(
    ("content", "enhanced"),
    [("Subject: hi\n\nGrüße\n", "5.6.3"), ("Subject: Grüße\n\nhello\n", "5.6.9")],
)
async def test_eight_bit_mail_is_not_sent_to_a_seven_bit_server(
    nursery: trio.Nursery, content: str, enhanced: str
) -> None:
    """RFC 6152 section 3 / RFC 6531 section 3.2: no MAIL at all; the error is ours, permanent."""
    script = [("EHLO me.test", "250-old.test\r\n250 SIZE 1000000"), ("QUIT", "221 bye")]
    client, server = trio.testing.memory_stream_pair()
    seen: list[str] = []
    nursery.start_soon(scripted_server, server, "220 old.test ESMTP", script, seen)
    with pytest.raises(SmtpSendError) as caught:
        await send_message(
            client, helo="me.test", sender="a@me.test", recipients=["b@old.test"], content=content.encode()
        )
    assert caught.value.local and caught.value.reply.code // 100 == 5
    assert caught.value.reply.enhanced == enhanced
    assert seen == ["EHLO me.test", "QUIT"]
