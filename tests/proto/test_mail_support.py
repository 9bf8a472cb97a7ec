"""SASL exchanges, Received: headers and RFC 3464 bounces."""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import email.utils
from datetime import UTC, datetime
from typing import cast

import pytest

from netlab.proto.dsn import RecipientStatus, bounce_message
from netlab.proto.mail_headers import received_header, with_protocol
from netlab.proto.sasl import Challenge, Credentials, SaslError, SaslServer, plain_response


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_plain_with_initial_response() -> None:
    assert SaslServer("plain").start(plain_response("u@x.test", "pw")) == Credentials("u@x.test", "pw")


def test_plain_after_empty_challenge() -> None:
    sasl = SaslServer("PLAIN")
    assert sasl.start(None) == Challenge(b"")
    assert sasl.respond(b64("admin\0u\0pw")) == Credentials("u", "pw", "admin")


def test_login() -> None:
    sasl = SaslServer("LOGIN")
    assert sasl.start(None) == Challenge(b"Username:")
    assert sasl.respond(b64("u")) == Challenge(b"Password:")
    assert sasl.respond(b64("pw")) == Credentials("u", "pw")


@pytest.mark.parametrize(
    ("mechanism", "line", "reason"),
    [
        ("CRAM-MD5", None, "mechanism"),
        ("PLAIN", "*", "cancelled"),
        ("PLAIN", "not base64!", "malformed"),
        ("PLAIN", b64("only-one-part"), "malformed"),
        ("PLAIN", base64.b64encode(b"\0\xff\0pw").decode(), "malformed"),
    ],
)
def test_sasl_errors(mechanism: str, line: str | None, reason: str) -> None:
    with pytest.raises(SaslError) as info:
        SaslServer(mechanism).start(line)
    assert info.value.reason == reason


def test_empty_initial_response_is_equals_sign() -> None:
    with pytest.raises(SaslError, match="authzid NUL"):
        SaslServer("PLAIN").start("=")


@pytest.mark.parametrize(
    ("extended", "tls", "auth", "utf8", "name"),
    [
        (False, False, False, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, True, True, False, "ESMTPSA"),
        (True, False, True, True, "UTF8SMTPA"),
    ],
)
def test_with_protocol(extended: bool, tls: bool, auth: bool, utf8: bool, name: str) -> None:
    assert with_protocol(extended=extended, tls=tls, authenticated=auth, smtputf8=utf8) == name


def test_received_header_parses() -> None:
    when = email.utils.format_datetime(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    header = received_header(
        helo="client.test",
        peer_ip="::1",
        by="mx.test",
        protocol="ESMTPS",
        queue_id="ABC",
        recipients=["a@b.test"],
        date=when,
    )
    msg = email.message_from_bytes(header + b"Subject: x\r\n\r\nbody\r\n", policy=email.policy.default)
    received = " ".join(str(msg["Received"]).split())
    assert received.startswith("from client.test ([IPv6:::1]) by mx.test (netlab) with ESMTPS id ABC")
    assert received.endswith("for <a@b.test>; Wed, 01 May 2024 12:00:00 +0000")
    many = received_header(
        helo="c", peer_ip="1.2.3.4", by="m", protocol="ESMTP", queue_id="X", recipients=["a", "b"], date=when
    )
    assert b"for <" not in many


def test_bounce_is_a_delivery_status_report() -> None:
    now = datetime(2024, 5, 6, tzinfo=UTC)
    raw = bounce_message(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        original_headers=b"From: alice@a.test\r\nSubject: lunch\r\n",
        failures=[
            RecipientStatus("bob@b.test", "5.1.1", "550 5.1.1 User unknown", "mx.b.test"),
            RecipientStatus("carol@c.test", "4.4.7", "451 4.4.1 No mail server answered"),
        ],
        arrival=datetime(2024, 5, 1, tzinfo=UTC),
        now=now,
        message_id="DSN1",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == "alice@a.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = cast(list[email.message.Message], parts[1].get_payload())
    assert str(blocks[0]["Reporting-MTA"]) == "dns; mx.a.test"
    assert [str(b["Final-Recipient"]) for b in blocks[1:]] == ["rfc822; bob@b.test", "rfc822; carol@c.test"]
    assert [str(b["Status"]) for b in blocks[1:]] == ["5.1.1", "4.4.7"]
    assert str(blocks[1]["Diagnostic-Code"]) == "smtp; 550 5.1.1 User unknown"
    assert "Subject: lunch" in parts[2].get_content()
