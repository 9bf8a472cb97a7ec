"""The servers on real sockets (127.0.0.1): smtplib, poplib, the RFC example dialogues, MX relay."""

from __future__ import annotations

import email
import email.policy
import poplib
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dnslib
import pytest
import trio

from netlab.aio.endpoint import UdpEndpoint, open_udp_endpoint
from netlab.aio.shutdown import Lifetime
from netlab.config import NetlabConfig, override
from netlab.proto.pop3_maildrop import apop_digest
from servers import pop3, smtp
from servers.mail_system import MailSystem
from tests.mailtest import PASSWORD, LineClient, free_port, maildir_files, make_mail

pytestmark = pytest.mark.timeout(60)

NO_VERIFY = ssl.create_default_context()
NO_VERIFY.check_hostname = False
NO_VERIFY.verify_mode = ssl.CERT_NONE


def config(store: Path, **tables: dict[str, Any]) -> NetlabConfig:
    cfg = NetlabConfig()
    for table, values in tables.items():
        cfg = override(cfg, table, {"store": str(store), **values})
    return cfg


@dataclass
class Servers:
    mail: MailSystem
    smtp_port: int
    pop3_port: int
    lifetime: Lifetime


async def start_servers(
    nursery: trio.Nursery, mail: MailSystem, smtp_settings: dict[str, Any], pop3_settings: dict[str, Any]
) -> Servers:
    cfg = config(mail.root, smtp={"hostname": "mx.test", **smtp_settings}, pop3=pop3_settings)
    lifetime = Lifetime()
    smtp_listeners = list(await trio.open_tcp_listeners(0, host="127.0.0.1"))
    pop3_listeners = list(await trio.open_tcp_listeners(0, host="127.0.0.1"))
    await nursery.start(partial(smtp.serve, cfg, lifetime, listeners=smtp_listeners, mail=mail))
    await nursery.start(partial(pop3.serve, cfg, lifetime, listeners=pop3_listeners, mail=mail))
    return Servers(
        mail,
        smtp_listeners[0].socket.getsockname()[1],
        pop3_listeners[0].socket.getsockname()[1],
        lifetime,
    )


@pytest.fixture
async def servers(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Servers]:
    mail = make_mail(tmp_path, ("example.test",), ("alice@example.test", "bob@example.test"), threads=True)
    running = await start_servers(nursery, mail, {}, {"apop": True})
    yield running
    running.lifetime.stop()


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


async def test_smtplib_starttls_auth_plain_and_login(servers: Servers) -> None:
    def session() -> None:
        with smtplib.SMTP("127.0.0.1", servers.smtp_port, timeout=20) as s:
            s.ehlo()
            assert not s.has_extn("auth")
            s.starttls(context=NO_VERIFY)
            s.ehlo()
            assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            s.login("alice@example.test", PASSWORD)  # PLAIN, the first offered
            refused = s.sendmail(
                "alice@example.test", ["bob@example.test", "x@far.test"], b"Subject: one\r\n\r\n1\r\n"
            )
            assert refused == {}
        with smtplib.SMTP("127.0.0.1", servers.smtp_port, timeout=20) as s:
            s.starttls(context=NO_VERIFY)
            s.ehlo()
            s.user, s.password = "bob@example.test", PASSWORD
            assert s.auth("LOGIN", s.auth_login)[0] == 235
            s.send_message(
                email.message_from_string("Subject: two\n\n2\n"), "bob@example.test", ["alice@example.test"]
            )

    await in_thread(session)
    (bob,) = maildir_files(servers.mail.root, "bob@example.test")
    assert b"with ESMTPSA" in bob.read_bytes()
    assert len(maildir_files(servers.mail.root, "alice@example.test")) == 1
    (queued,) = servers.mail.queue.entries()
    assert queued.recipients == ["x@far.test"]


async def test_smtplib_relay_denied_without_auth(servers: Servers) -> None:
    def session() -> None:
        with (
            smtplib.SMTP("127.0.0.1", servers.smtp_port, timeout=20) as s,
            pytest.raises(smtplib.SMTPRecipientsRefused),
        ):
            s.sendmail("spammer@evil.test", ["victim@far.test"], b"Subject: spam\r\n\r\nx\r\n")

    await in_thread(session)
    assert servers.mail.queue.entries() == []


async def test_poplib_stls_retrieve_delete(servers: Servers) -> None:
    box = servers.mail.store.maildir("alice@example.test")
    box.deliver(b"Subject: first\n\n.starts with a dot\n")
    box.deliver(b"Subject: second\n\nhi\n")

    def session() -> None:
        p = poplib.POP3("127.0.0.1", servers.pop3_port, timeout=20)
        p.stls(context=NO_VERIFY)
        p.user("alice@example.test")
        p.pass_(PASSWORD)
        assert p.stat() == (2, 61)
        _, lines, octets = p.retr(1)
        assert lines == [b"Subject: first", b"", b".starts with a dot"]
        assert octets == 38  # the size LIST gives: CRLF octets, before stuffing
        p.dele(1)
        p.quit()

    await in_thread(session)
    (left,) = maildir_files(servers.mail.root, "alice@example.test")
    assert b"second" in left.read_bytes()


async def test_rfc5321_appendix_d_typed_by_hand(tmp_path: Path, nursery: trio.Nursery) -> None:
    """D.1 (a typical transaction), D.2 (aborted) and D.4 (VRFY), line by line like telnet."""
    mail = make_mail(tmp_path, ("foo.com",), ("jones@foo.com", "brown@foo.com"), threads=True)
    running = await start_servers(nursery, mail, {"hostname": "foo.com"}, {})
    client = LineClient(await trio.open_tcp_stream("127.0.0.1", running.smtp_port))

    async def say(line: str, code: int) -> str:
        await client.send(line)
        got, text = await client.reply()
        assert got == code, (line, got, text)
        return text

    assert (await client.reply()) == (220, "foo.com ESMTP netlab")
    assert (await say("EHLO bar.com", 250)).startswith("foo.com greets bar.com\n")
    # D.1
    await say("MAIL FROM:<Smith@bar.com>", 250)
    await say("RCPT TO:<Jones@foo.com>", 250)
    await say("RCPT TO:<Green@foo.com>", 550)
    await say("RCPT TO:<Brown@foo.com>", 250)
    await say("DATA", 354)
    await client.send("Blah blah blah...", "...etc. etc. etc.")
    assert (await say(".", 250)).startswith("2.0.0 Ok: queued as ")
    # D.2
    await say("MAIL FROM:<Smith@bar.com>", 250)
    await say("RCPT TO:<Jones@foo.com>", 250)
    await say("RSET", 250)
    # D.4
    assert (await say("VRFY Crispin", 252)).startswith("2.5.0 ")
    await say("QUIT", 221)
    assert await client.closed()
    for user in ("jones@foo.com", "brown@foo.com"):
        (path,) = maildir_files(mail.root, user)
        # The RFC's line "...etc. etc. etc." was typed unstuffed, so its first "." goes (4.5.2).
        assert path.read_bytes().endswith(b"\nBlah blah blah...\n..etc. etc. etc.\n")
    running.lifetime.stop()


async def test_rfc1939_section_10_typed_by_hand(tmp_path: Path, nursery: trio.Nursery) -> None:
    mail = make_mail(tmp_path, ("dbc.mtview.ca.us",), ())
    mail.users.set_password("mrose@dbc.mtview.ca.us", "tanstaaf", create=True, apop=True)
    box = mail.store.maildir("mrose@dbc.mtview.ca.us")
    # Two messages of 120 and 200 octets on the wire, as in the RFC's example.
    box.deliver(b"Subject: one\n\n" + b"x" * 102 + b"\n")
    box.deliver(b"Subject: two\n\n" + b"y" * 182 + b"\n")
    mail.threads = True
    running = await start_servers(nursery, mail, {}, {"apop": True})
    client = LineClient(await trio.open_tcp_stream("127.0.0.1", running.pop3_port))
    greeting = await client.line()
    assert greeting.startswith("+OK POP3 netlab ready <")
    timestamp = greeting[greeting.index("<") :]
    await client.send(f"APOP mrose@dbc.mtview.ca.us {apop_digest(timestamp, 'tanstaaf')}")
    assert await client.line() == "+OK 2 message(s), 320 octets"
    await client.send("STAT")
    assert await client.line() == "+OK 2 320"
    await client.send("LIST")
    assert await client.line() == "+OK 2 messages"
    assert await client.block() == ["1 120", "2 200"]
    await client.send("RETR 1")
    assert await client.line() == "+OK 120 octets"
    assert await client.block() == ["Subject: one", "", "x" * 102]
    await client.send("DELE 1")
    assert await client.line() == "+OK Message 1 deleted"
    await client.send("RETR 2")
    assert await client.line() == "+OK 200 octets"
    assert len(await client.block()) == 3
    await client.send("DELE 2")
    assert await client.line() == "+OK Message 2 deleted"
    await client.send("QUIT")
    assert await client.line() == "+OK Bye (2 message(s) deleted)"
    assert await client.closed()
    assert box.count() == 0
    running.lifetime.stop()


class ScriptedDns:
    """A resolver on 127.0.0.1 that answers from a zone in memory (A and MX)."""

    def __init__(self, records: list[str]) -> None:
        self.records = [dnslib.RR.fromZone(r)[0] for r in records]

    async def serve(self, ep: UdpEndpoint) -> None:
        while True:
            data, peer = await ep.recvfrom()
            query = dnslib.DNSRecord.parse(data)
            reply = query.reply()
            q = query.questions[0]
            for rr in self.records:
                if rr.rname == q.qname and rr.rtype == q.qtype:
                    reply.add_answer(rr)
            await ep.sendto(reply.pack(), peer)


async def test_two_servers_exchange_mail_over_mx(tmp_path: Path, nursery: trio.Nursery) -> None:
    dns = ScriptedDns(
        [
            "a.test. 60 IN MX 10 mx.a.test.",
            "mx.a.test. 60 IN A 127.0.0.2",
            "b.test. 60 IN MX 10 mx.b.test.",
            "mx.b.test. 60 IN A 127.0.0.3",
        ]
    )
    ep = await open_udp_endpoint("127.0.0.1", 0)
    nursery.start_soon(dns.serve, ep)
    resolver = f"127.0.0.1:{ep.local_address[1]}"
    port = free_port("127.0.0.2")
    lifetime = Lifetime()
    mails = {}
    for domain, address in (("a.test", "127.0.0.2"), ("b.test", "127.0.0.3")):
        user = "alice@a.test" if domain == "a.test" else "bob@b.test"
        mails[domain] = make_mail(tmp_path / domain, (domain,), (user,), threads=True)
        settings = {"hostname": f"mx.{domain}", "resolver": resolver, "relay_port": port}
        cfg = config(mails[domain].root, smtp={**settings, "domains": [domain]})
        listeners = list(await trio.open_tcp_listeners(port, host=address))
        await nursery.start(partial(smtp.serve, cfg, lifetime, listeners=listeners, mail=mails[domain]))

    def submit(server: str, user: str, to: str, subject: str) -> None:
        with smtplib.SMTP(server, port, timeout=20) as s:
            s.starttls(context=NO_VERIFY)
            s.login(user, PASSWORD)
            s.sendmail(
                user, [to], f"From: {user}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
            )

    await in_thread(lambda: submit("127.0.0.2", "alice@a.test", "bob@b.test", "lunch?"))
    await in_thread(lambda: submit("127.0.0.3", "bob@b.test", "alice@a.test", "Re: lunch?"))
    with trio.fail_after(30):
        while not (
            maildir_files(mails["b.test"].root, "bob@b.test")
            and maildir_files(mails["a.test"].root, "alice@a.test")
        ):
            await trio.sleep(0.05)
    (to_bob,) = maildir_files(mails["b.test"].root, "bob@b.test")
    received = email.message_from_bytes(to_bob.read_bytes(), policy=email.policy.default).get_all("Received")
    assert received is not None
    hops = [" ".join(str(r).split()) for r in received]
    # Newest first: B took it from A over TLS (A said EHLO mx.a.test), A took it from Alice.
    assert hops[0].startswith("from mx.a.test ([127.0.0.1]) by mx.b.test (netlab) with ESMTPS id ")
    assert hops[1].startswith("from ")
    assert " by mx.a.test (netlab) with ESMTPSA " in hops[1]
    (to_alice,) = maildir_files(mails["a.test"].root, "alice@a.test")
    assert b"Subject: Re: lunch?" in to_alice.read_bytes()
    assert mails["a.test"].queue.entries() == mails["b.test"].queue.entries() == []
    lifetime.stop()
