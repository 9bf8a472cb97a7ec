"""The SMTP session driver over in-memory streams, in virtual time."""

from __future__ import annotations

import base64
import ipaddress
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from netlab.proto.sasl import plain_response
from netlab.store.maildir import Maildir
from servers.mail_system import MailSystem
from servers.smtp_session import SmtpServerContext, handle_connection
from tests.mailtest import PASSWORD, FakeSocketStream, LineClient, maildir_files, make_mail, smtp_context


class CountingStream(trio.abc.Stream):
    """Counts the server's writes, to see pipelined replies leave in one."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.socket = getattr(inner, "socket", None)
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def mail(tmp_path: Path) -> MailSystem:
    return make_mail(tmp_path, users=("alice@example.test", "bob@example.test"))


async def connect(
    nursery: trio.Nursery, ctx: SmtpServerContext, *, peer: str | None = None
) -> tuple[LineClient, CountingStream]:
    client_end, server_end = trio.testing.memory_stream_pair()
    counted = CountingStream(FakeSocketStream(server_end, peer) if peer else server_end)
    nursery.start_soon(handle_connection, counted, ctx)
    client = LineClient(client_end)
    assert (await client.reply())[0] == 220
    return client, counted


@pytest.fixture
async def session(mail: MailSystem, nursery: trio.Nursery) -> tuple[LineClient, SmtpServerContext]:
    ctx = smtp_context(mail, auth_requires_tls=False)
    client, _ = await connect(nursery, ctx)
    return client, ctx


async def test_idle_client_gets_421_after_the_timeout(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _ = await connect(nursery, smtp_context(mail, idle_timeout=300.0))
    start = trio.current_time()
    await client.send("EHLO c")
    await client.reply()
    assert await client.reply() == (421, "4.4.2 mx.test Idle timeout, closing")
    assert trio.current_time() - start == 300.0
    assert await client.closed()


async def test_client_stalling_inside_data_also_times_out(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _ = await connect(nursery, smtp_context(mail, idle_timeout=60.0))
    await client.send("EHLO c", "MAIL FROM:<x@y.test>", "RCPT TO:<alice@example.test>", "DATA")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    await client.send("half a message")
    assert (await client.reply())[0] == 421
    assert maildir_files(mail.root, "alice@example.test") == []


async def test_pipelined_group_is_answered_in_order_in_one_write(
    mail: MailSystem, nursery: trio.Nursery
) -> None:
    client, counted = await connect(nursery, smtp_context(mail))
    await client.send("EHLO c")
    await client.reply()
    writes_before = len(counted.writes)
    await client.send(
        "MAIL FROM:<x@y.test>",
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<nobody@example.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
    )
    assert [await client.code() for _ in range(5)] == [250, 250, 550, 250, 354]
    assert len(counted.writes) == writes_before + 1
    await client.send("Subject: pipelined", "", "body", ".", "QUIT")
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 221
    for user in ("alice@example.test", "bob@example.test"):
        (path,) = maildir_files(mail.root, user)
        text = path.read_bytes()
        assert text.startswith(b"Received: from c ([unknown])\n\tby mx.test (netlab) with ESMTP id ")
        assert text.endswith(b"Subject: pipelined\n\nbody\n")


async def test_recipient_policy(session: tuple[LineClient, SmtpServerContext]) -> None:
    client, _ = session
    await client.send("EHLO c", "MAIL FROM:<x@y.test>")
    await client.reply()
    await client.reply()
    await client.send("RCPT TO:<nobody@example.test>")
    assert await client.reply() == (550, "5.1.1 <nobody@example.test>: User unknown")
    await client.send("RCPT TO:<friend@elsewhere.test>")
    assert await client.reply() == (550, "5.7.1 <friend@elsewhere.test>: Relay access denied")
    await client.send("RCPT TO:<ALICE@Example.Test>")
    assert await client.code() == 250


async def test_too_many_recipients(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, smtp_context(mail, max_recipients=2))
    await client.send("EHLO c", "MAIL FROM:<>", *["RCPT TO:<alice@example.test>"] * 3)
    assert [await client.code() for _ in range(5)] == [250, 250, 250, 250, 452]


async def test_trusted_network_may_relay_and_the_message_is_queued(
    mail: MailSystem, nursery: trio.Nursery
) -> None:
    ctx = smtp_context(mail, trusted=(ipaddress.ip_network("10.0.0.0/8"),))
    client, _ = await connect(nursery, ctx, peer="10.1.2.3")
    await client.send("EHLO c", "MAIL FROM:<x@y.test>", "RCPT TO:<friend@elsewhere.test>", "DATA")
    assert [await client.code() for _ in range(4)] == [250, 250, 250, 354]
    await client.send("Subject: out", "", "hi", ".")
    assert await client.code() == 250
    (entry,) = mail.queue.entries()
    assert entry.recipients == ["friend@elsewhere.test"]
    assert entry.sender == "x@y.test"
    assert mail.queued.is_set()
    other, _ = await connect(nursery, ctx, peer="192.0.2.1")
    await other.send("EHLO c", "MAIL FROM:<x@y.test>", "RCPT TO:<friend@elsewhere.test>")
    assert [await other.code() for _ in range(3)] == [250, 250, 550]


async def test_auth_needs_tls_by_default(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, smtp_context(mail))
    await client.send("EHLO c")
    _code, text = await client.reply()
    assert "AUTH" not in text
    await client.send(f"AUTH PLAIN {plain_response('alice@example.test', PASSWORD)}")
    assert await client.reply() == (538, "5.7.11 Encryption required for requested authentication mechanism")


async def test_auth_plain_lets_a_user_relay(session: tuple[LineClient, SmtpServerContext]) -> None:
    client, _ = session
    await client.send("EHLO c")
    assert "AUTH PLAIN LOGIN" in (await client.reply())[1]
    await client.send(f"AUTH PLAIN {plain_response('alice@example.test', PASSWORD)}")
    assert await client.reply() == (235, "2.7.0 Authentication successful")
    await client.send("AUTH PLAIN")
    assert await client.code() == 503
    await client.send("MAIL FROM:<alice@example.test>", "RCPT TO:<friend@elsewhere.test>")
    assert [await client.code() for _ in range(2)] == [250, 250]


async def test_auth_login_exchange(session: tuple[LineClient, SmtpServerContext]) -> None:
    client, _ = session
    await client.send("EHLO c", "AUTH LOGIN")
    await client.reply()
    assert await client.reply() == (334, base64.b64encode(b"Username:").decode())
    await client.send(base64.b64encode(b"bob@example.test"))
    assert await client.reply() == (334, base64.b64encode(b"Password:").decode())
    await client.send(base64.b64encode(PASSWORD.encode()))
    assert await client.code() == 235


async def test_auth_cancel_and_garbage(session: tuple[LineClient, SmtpServerContext]) -> None:
    client, _ = session
    await client.send("EHLO c", "AUTH PLAIN", "*", "AUTH PLAIN !!!", "AUTH CRAM-MD5")
    await client.reply()
    assert [await client.code() for _ in range(4)] == [334, 501, 501, 504]


async def test_failed_auth_is_slow_and_limited(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _ = await connect(nursery, smtp_context(mail, auth_requires_tls=False, login_delay=2.0))
    await client.send("EHLO c")
    await client.reply()
    for expected in (535, 535, 421):
        start = trio.current_time()
        await client.send(f"AUTH PLAIN {plain_response('alice@example.test', 'wrong')}")
        assert await client.code() == expected
        assert trio.current_time() - start == 2.0
    assert await client.closed()


async def test_oversized_message_is_refused_and_session_goes_on(
    mail: MailSystem, nursery: trio.Nursery
) -> None:
    client, _ = await connect(nursery, smtp_context(mail, max_message_size=100))
    await client.send("EHLO c")
    assert "SIZE 100" in (await client.reply())[1]
    await client.send("MAIL FROM:<x@y.test> SIZE=500")
    assert await client.reply() == (552, "5.3.4 Message size exceeds fixed maximum message size")
    await client.send("MAIL FROM:<x@y.test>", "RCPT TO:<alice@example.test>", "DATA")
    assert [await client.code() for _ in range(3)] == [250, 250, 354]
    await client.send(*["x" * 50] * 10, ".")
    assert await client.code() == 552
    await client.send("NOOP")
    assert await client.code() == 250
    assert maildir_files(mail.root, "alice@example.test") == []


async def test_storage_failure_leaves_nothing_half_stored(
    mail: MailSystem, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Maildir.deliver

    def failing(self: Maildir, content: bytes, *, sync_dir: bool = True) -> str:
        if "bob" in str(self.path):
            raise OSError(28, "No space left on device")
        return real(self, content, sync_dir=sync_dir)

    monkeypatch.setattr(Maildir, "deliver", failing)
    client, _ = await connect(nursery, smtp_context(mail))
    await client.send(
        "EHLO c", "MAIL FROM:<x@y.test>", "RCPT TO:<alice@example.test>", "RCPT TO:<bob@example.test>"
    )
    await client.send("DATA")
    assert [await client.code() for _ in range(5)] == [250, 250, 250, 250, 354]
    await client.send("hello", ".")
    assert await client.reply() == (451, "4.3.0 Local error in processing, try again later")
    assert maildir_files(mail.root, "alice@example.test") == []


async def test_shutdown_sends_421_to_idle_sessions(
    mail: MailSystem, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    ctx = smtp_context(mail)
    client, _ = await connect(nursery, ctx)
    await trio.sleep(10)
    ctx.waits.shut_down()
    assert await client.reply() == (421, "4.3.2 mx.test Service shutting down")
    late, _ = await connect_refused(nursery, ctx)
    assert late == 421


async def connect_refused(nursery: trio.Nursery, ctx: SmtpServerContext) -> tuple[int, LineClient]:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(handle_connection, server_end, ctx)
    client = LineClient(client_end)
    return await client.code(), client


async def test_starttls_then_auth_login(mail: MailSystem, nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, _ = await connect(nursery, smtp_context(mail, ssl_context=server_ctx))
    await client.send("EHLO c")
    assert "STARTTLS" in (await client.reply())[1]
    # A command pipelined after STARTTLS in plaintext must be thrown away (RFC 3207 4.2).
    await client.send("STARTTLS", "MAIL FROM:<injected@evil.test>")
    assert await client.code() == 220
    tls = trio.SSLStream(client.stream, client_ctx, server_hostname="mx.test")
    await tls.do_handshake()
    secure = LineClient(tls)
    await secure.send("MAIL FROM:<x@y.test>")
    assert await secure.code() == 503  # EHLO again first
    await secure.send("EHLO c")
    text = (await secure.reply())[1]
    assert "STARTTLS" not in text
    assert "AUTH PLAIN LOGIN" in text
    await secure.send(
        "AUTH LOGIN",
        base64.b64encode(b"alice@example.test"),
        base64.b64encode(PASSWORD.encode()),
        "MAIL FROM:<alice@example.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
    )
    assert [await secure.code() for _ in range(6)] == [334, 334, 235, 250, 250, 354]
    await secure.send("secret", ".", "QUIT")
    assert await secure.code() == 250
    (path,) = maildir_files(mail.root, "bob@example.test")
    assert b"with ESMTPSA" in path.read_bytes()


async def test_mail_loop_is_refused(mail: MailSystem, nursery: trio.Nursery) -> None:
    client, _ = await connect(nursery, smtp_context(mail))
    await client.send("EHLO c", "MAIL FROM:<x@y.test>", "RCPT TO:<alice@example.test>", "DATA")
    assert [await client.code() for _ in range(4)] == [250, 250, 250, 354]
    await client.send(*["Received: from somewhere by elsewhere; Mon, 1 Jan 2024 00:00:00 +0000"] * 100)
    await client.send("Subject: loop", "", "round and round", ".")
    assert await client.reply() == (554, "5.4.6 Too many hops, mail loop detected")
    assert maildir_files(mail.root, "alice@example.test") == []


async def test_starttls_forgets_an_earlier_auth(mail: MailSystem, nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client, _ = await connect(nursery, smtp_context(mail, ssl_context=server_ctx, auth_requires_tls=False))
    await client.send("EHLO c", f"AUTH PLAIN {plain_response('alice@example.test', PASSWORD)}", "STARTTLS")
    assert [await client.code() for _ in range(3)] == [250, 235, 220]
    tls = trio.SSLStream(client.stream, client_ctx, server_hostname="mx.test")
    await tls.do_handshake()
    secure = LineClient(tls)
    await secure.send("EHLO c", "MAIL FROM:<alice@example.test>", "RCPT TO:<friend@elsewhere.test>")
    assert [await secure.code() for _ in range(3)] == [250, 250, 550]
