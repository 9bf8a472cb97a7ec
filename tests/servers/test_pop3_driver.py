"""The POP3 session driver over in-memory streams, in virtual time."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from netlab.proto.pop3_maildrop import apop_digest
from servers.mail_system import MailSystem
from servers.pop3_session import Pop3ServerContext, handle_connection
from tests.mailtest import PASSWORD, LineClient, maildir_files, make_mail, pop3_context

ALICE = "alice@example.test"


@pytest.fixture
def mail(tmp_path: Path) -> MailSystem:
    mail = make_mail(tmp_path)
    box = mail.store.maildir(ALICE)
    for n in range(3):
        box.deliver(f"Subject: message {n}\n\n.dot line\nbody {n}\n".encode())
    return mail


async def connect(nursery: trio.Nursery, ctx: Pop3ServerContext) -> tuple[LineClient, str]:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(handle_connection, server_end, ctx)
    client = LineClient(client_end)
    greeting = await client.line()
    assert greeting.startswith("+OK ")
    return client, greeting


async def login(client: LineClient) -> str:
    await client.send(f"USER {ALICE}", f"PASS {PASSWORD}")
    assert (await client.line()).startswith("+OK")
    return await client.line()


async def test_session_lists_retrieves_and_deletes_only_at_quit(
    mail: MailSystem, nursery: trio.Nursery
) -> None:
    client, _ = await connect(nursery, pop3_context(mail, auth_requires_tls=False))
    assert await login(client) == "+OK 3 message(s), 123 octets"
    await client.send("STAT", "LIST", "RETR 2")
    assert await client.line() == "+OK 3 123"
    assert await client.line() == "+OK 3 messages"
    assert await client.block() == ["1 41", "2 41", "3 41"]
    assert await client.line() == "+OK 41 octets"
    assert await client.block() == ["Subject: message 1", "", ".dot line", "body 1"]
    await client.send("DELE 1", "DELE 3", "STAT")
    assert [await client.line() for _ in range(3)] == [
        "+OK Message 1 deleted",
        "+OK Message 3 deleted",
        "+OK 1 41",
    ]
    assert len(maildir_files(mail.root, ALICE)) == 3  # nothing removed before UPDATE
    await client.send("QUIT")
    assert await client.line() == "+OK Bye (2 message(s) deleted)"
    (left,) = maildir_files(mail.root, ALICE)
    assert b"message 1" in left.read_bytes()


async def test_session_without_quit_deletes_nothing(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, pop3_context(mail, auth_requires_tls=False))
    await login(client)
    await client.send("DELE 1")
    await client.line()
    await client.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert len(maildir_files(mail.root, ALICE)) == 3
    again, _ = await connect(nursery, pop3_context(mail, auth_requires_tls=False))
    assert await login(again) == "+OK 3 message(s), 123 octets"  # and the lock was released


async def test_second_session_gets_in_use(mail: MailSystem, nursery: trio.Nursery) -> None:
    ctx = pop3_context(mail, auth_requires_tls=False)
    first, _ = await connect(nursery, ctx)
    await login(first)
    second, _ = await connect(nursery, ctx)
    await second.send(f"USER {ALICE}", f"PASS {PASSWORD}")
    await second.line()
    assert await second.line() == "-ERR [IN-USE] Maildrop already locked by another session"


async def test_failed_logins_are_delayed_then_the_session_ends(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _ = await connect(nursery, pop3_context(mail, auth_requires_tls=False, login_delay=2.0))
    for expected in ("-ERR [AUTH] Authentication failed",) * 2 + ("-ERR [AUTH] Too many failed logins",):
        start = trio.current_time()
        await client.send(f"USER {ALICE}", "PASS wrong")
        assert (await client.line()).startswith("+OK")
        assert await client.line() == expected
        assert trio.current_time() - start == 2.0
    assert await client.closed()


async def test_plaintext_login_refused_without_tls(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, pop3_context(mail))
    await client.send("CAPA", f"USER {ALICE}", "AUTH PLAIN")
    assert await client.line() == "+OK Capability list follows"
    caps = await client.block()
    assert "USER" not in caps
    assert "SASL PLAIN LOGIN" not in caps
    assert (await client.line()).startswith("-ERR [AUTH]")
    assert (await client.line()).startswith("-ERR [AUTH]")


async def test_idle_session_is_closed_silently(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _ = await connect(nursery, pop3_context(mail, auth_requires_tls=False, idle_timeout=600.0))
    await login(client)
    await client.send("DELE 1")
    await client.line()
    start = trio.current_time()
    assert await client.closed()
    assert trio.current_time() - start == 600.0
    assert len(maildir_files(mail.root, ALICE)) == 3


async def test_apop(mail: MailSystem, nursery: trio.Nursery) -> None:
    mail.users.set_password(ALICE, "tanstaaf", create=False, apop=True)
    client, greeting = await connect(nursery, pop3_context(mail, apop=True))
    timestamp = greeting[greeting.index("<") :]
    await client.send(f"APOP {ALICE} {'0' * 32}")
    assert (await client.line()).startswith("-ERR [AUTH]")
    await client.send(f"APOP {ALICE} {apop_digest(timestamp, 'tanstaaf')}")
    assert await client.line() == "+OK 3 message(s), 123 octets"


async def test_apop_disabled(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, greeting = await connect(nursery, pop3_context(mail))
    assert "<" not in greeting
    await client.send(f"APOP {ALICE} {'0' * 32}")
    assert await client.line() == "-ERR APOP not enabled"


async def test_stls_then_auth_plain(mail: MailSystem, nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("pop.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, _ = await connect(nursery, pop3_context(mail, ssl_context=server_ctx))
    await client.send("STLS")
    assert await client.line() == "+OK Begin TLS negotiation"
    tls = trio.SSLStream(client.stream, client_ctx, server_hostname="pop.test")
    await tls.do_handshake()
    secure = LineClient(tls)
    await secure.send("CAPA")
    await secure.line()
    caps = await secure.block()
    assert "STLS" not in caps
    assert "SASL PLAIN LOGIN" in caps
    await secure.send("AUTH PLAIN")
    assert await secure.line() == "+ "
    await secure.send(base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()))
    assert await secure.line() == "+OK 3 message(s), 123 octets"
    await secure.send("UIDL 1", "TOP 1 0", "QUIT")
    uid = (await secure.line()).split()[2]
    assert maildir_files(mail.root, ALICE)[0].name.startswith(uid)
    assert await secure.line() == "+OK Top of message follows"
    assert await secure.block() == ["Subject: message 0", ""]
    assert await secure.line() == "+OK Bye (0 message(s) deleted)"
