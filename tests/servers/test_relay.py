"""The relay in virtual time: MX order, fallback, retries, give-up, bounces (in-memory network)."""

from __future__ import annotations

import email
import email.message
import email.policy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from netlab.aio.dns_stub import DnsLookupError
from netlab.config import SmtpConfig
from servers.mail_system import MailSystem
from servers.relay import Relay
from servers.smtp_session import handle_connection
from tests.mailtest import LineClient, maildir_files, make_mail, smtp_context

Handler = Callable[[trio.abc.Stream], Awaitable[None]]
MESSAGE = b"From: alice@a.test\nTo: bob@b.test\nSubject: lunch?\n\nat noon\n"


@dataclass
class FakeDns:
    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    async def resolve_mx(self, domain: str) -> list[tuple[int, str]]:
        await trio.lowlevel.checkpoint()
        if domain in self.failing:
            raise DnsLookupError(domain, "MX", "SERVFAIL")
        return sorted(self.mx.get(domain, []))  # as StubResolver.resolve_mx does

    async def resolve_addresses(self, host: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        return self.a.get(host, [])


@dataclass
class FakeNet:
    """``connect`` hands out memory streams to the server registered for an address."""

    nursery: trio.Nursery
    servers: dict[str, Handler] = field(default_factory=dict)
    attempts: list[tuple[float, str]] = field(default_factory=list)

    async def connect(self, address: str, port: int) -> trio.abc.Stream:
        self.attempts.append((trio.current_time(), address))
        await trio.lowlevel.checkpoint()
        if address not in self.servers:
            raise OSError(111, "Connection refused")
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.servers[address], server)
        return client


@dataclass
class Lab:
    a: MailSystem
    b: MailSystem
    dns: FakeDns
    net: FakeNet
    relay_scope: trio.CancelScope
    start: float = 0.0

    async def queue(
        self, sender: str = "alice@a.test", rcpts: tuple[str, ...] = ("bob@b.test",), message: bytes = MESSAGE
    ) -> None:
        self.start = trio.current_time()
        await self.a.accept(sender, list(rcpts), message)

    async def drain(self, limit: float = 100_000.0) -> None:
        """Wait (virtual time) until the queue of A is empty."""
        with trio.fail_after(limit):
            while self.a.queue.entries():
                await trio.sleep(1)

    def times(self) -> list[float]:
        return [t - self.start for t, _ in self.net.attempts]


CONFIG = replace(SmtpConfig(), retry_delays=(60.0, 120.0, 240.0), give_up_after=1000.0)


@pytest.fixture
async def lab(tmp_path: Path, nursery: trio.Nursery) -> Lab:
    # Tests that use it also take autojump_clock: pytest-trio picks the clock from the test's arguments.
    a = make_mail(tmp_path / "a", ("a.test",), ("alice@a.test",), clock=trio.current_time)
    b = make_mail(tmp_path / "b", ("b.test",), ("bob@b.test", "carol@b.test"))
    dns = FakeDns(mx={"b.test": [(10, "mx.b.test")]}, a={"mx.b.test": ["192.0.2.2"]})
    net = FakeNet(nursery, {"192.0.2.2": partial(handle_connection, ctx=smtp_context(b))})
    relay = Relay(a, CONFIG, "mx.a.test", resolver=dns, connect=net.connect)
    scope = trio.CancelScope()

    async def run_relay(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await relay.run(task_status=task_status)

    await nursery.start(run_relay)
    return Lab(a, b, dns, net, scope)


def dsn(mail: MailSystem, user: str) -> email.message.EmailMessage:
    (path,) = maildir_files(mail.root, user)
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def statuses(report: email.message.EmailMessage) -> dict[str, str]:
    status_part = list(report.iter_parts())[1]
    blocks = cast(list[email.message.Message], status_part.get_payload())
    return {str(b["Final-Recipient"]).split("; ")[1]: str(b["Status"]) for b in blocks[1:]}


async def test_delivers_over_mx(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    await lab.queue()
    await lab.drain()
    (path,) = maildir_files(lab.b.root, "bob@b.test")
    content = path.read_bytes()
    assert content.startswith(b"Received: from mx.a.test ")
    assert content.endswith(MESSAGE)
    assert lab.times() == [0.0]


async def test_tries_mx_hosts_in_preference_order(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    lab.dns.mx["b.test"] = [(20, "mx.b.test"), (10, "dead.b.test")]
    lab.dns.a["dead.b.test"] = ["192.0.2.99"]
    await lab.queue()
    await lab.drain()
    assert [address for _, address in lab.net.attempts] == ["192.0.2.99", "192.0.2.2"]
    assert len(maildir_files(lab.b.root, "bob@b.test")) == 1


async def test_domain_without_mx_is_its_own_mail_server(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    del lab.dns.mx["b.test"]
    lab.dns.a["b.test"] = ["192.0.2.2"]
    await lab.queue()
    await lab.drain()
    assert len(maildir_files(lab.b.root, "bob@b.test")) == 1


async def test_retries_with_growing_delays_then_bounces(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    lab.net.servers.clear()
    await lab.queue()
    await lab.drain()
    # Delays 60, 120, 240, 240...; the attempt at or after 1000 s gives up.
    assert lab.times() == [0.0, 60.0, 180.0, 420.0, 660.0, 900.0, 1140.0]
    report = dsn(lab.a, "alice@a.test")
    assert report.get_content_type() == "multipart/report"
    assert statuses(report) == {"bob@b.test": "4.4.7"}
    assert "Subject: lunch?" in list(report.iter_parts())[2].get_content()


async def test_queue_entry_records_the_last_error_between_attempts(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    lab.net.servers.clear()
    await lab.queue()
    await trio.sleep(30)
    (entry,) = lab.a.queue.entries()
    assert entry.attempts == 1
    assert entry.next_try == lab.start + 60.0
    assert entry.last_error.startswith("451 Cannot talk to mx.b.test [192.0.2.2]")


async def test_permanent_refusal_bounces_at_once(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    await lab.queue(rcpts=("nobody@b.test", "carol@b.test"))
    await lab.drain()
    assert lab.times() == [0.0]
    assert len(maildir_files(lab.b.root, "carol@b.test")) == 1
    report = dsn(lab.a, "alice@a.test")
    assert statuses(report) == {"nobody@b.test": "5.1.1"}
    assert "550 5.1.1 <nobody@b.test>: User unknown" in report.as_string()


async def test_a_bounce_is_never_bounced(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    await lab.queue(sender="", rcpts=("nobody@b.test",))
    await lab.drain()
    assert maildir_files(lab.a.root, "alice@a.test") == []


async def test_null_mx_refuses_mail(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    lab.dns.mx["b.test"] = [(0, ".")]
    await lab.queue()
    await lab.drain()
    assert lab.net.attempts == []
    assert statuses(dsn(lab.a, "alice@a.test")) == {"bob@b.test": "5.1.10"}


async def test_dns_failure_is_temporary(lab: Lab, autojump_clock: trio.testing.MockClock) -> None:
    lab.dns.failing.add("b.test")
    await lab.queue()
    await trio.sleep(30)
    (entry,) = lab.a.queue.entries()
    assert entry.last_error == "451 MX lookup for b.test failed: SERVFAIL"
    lab.dns.failing.clear()
    await lab.drain()
    assert len(maildir_files(lab.b.root, "bob@b.test")) == 1
    assert lab.times() == [60.0]


async def test_a_second_relay_waits_and_takes_over_after_a_restart(
    lab: Lab, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    lab.net.servers.clear()
    await lab.queue()
    await trio.sleep(10)
    lab.net.servers["192.0.2.2"] = partial(handle_connection, ctx=smtp_context(lab.b))
    second = Relay(lab.a, CONFIG, "mx.a.test", resolver=lab.dns, connect=lab.net.connect)
    await nursery.start(second.run)
    await trio.sleep(20)
    assert len(lab.net.attempts) == 1  # the second relay does not touch a queue that is in use
    lab.relay_scope.cancel()  # the first one stops (as a server that is shut down)
    await lab.drain()
    assert len(maildir_files(lab.b.root, "bob@b.test")) == 1
    assert lab.times() == [0.0, 30.0 + 30.0]  # the second took the queue at its next try


async def seven_bit_server(seen: list[str], stream: trio.abc.Stream) -> None:
    """An old server: no 8BITMIME, no SMTPUTF8 (it would take anything, which is the danger)."""
    peer = LineClient(stream)
    await stream.send_all(b"220 old.b.test ESMTP\r\n")
    while (line := await peer.line()) != "QUIT":
        seen.append(line)
        await stream.send_all(
            b"250-old.b.test\r\n250 SIZE 1000000\r\n" if line.startswith("EHLO") else b"250 ok\r\n"
        )
    await stream.send_all(b"221 bye\r\n")


@pytest.mark.parametrize(
    ("message", "rcpt", "status"),
    [
        ("Subject: lunch?\n\nÀ midi, chez Hélène\n", "bob@b.test", "5.6.3"),  # RFC 6152 section 3
        ("Subject: Grüße\n\nat noon\n", "bob@b.test", "5.6.9"),  # RFC 6531 section 3.2
        ("Subject: lunch?\n\nat noon\n", "jürgen@b.test", "5.6.7"),
    ],
)
async def test_eight_bit_mail_for_a_seven_bit_server_bounces(
    lab: Lab, autojump_clock: trio.testing.MockClock, message: str, rcpt: str, status: str
) -> None:
    seen: list[str] = []
    lab.net.servers["192.0.2.2"] = partial(seven_bit_server, seen)
    await lab.queue(rcpts=(rcpt,), message=message.encode())
    await lab.drain()
    assert lab.times() == [0.0]  # permanent: no retries
    assert seen == ["EHLO mx.a.test"]  # not sent as it is: no MAIL, no DATA
    (path,) = maildir_files(lab.a.root, "alice@a.test")
    raw = path.read_bytes().decode()
    assert f"Status: {status}" in raw
    assert "Diagnostic-Code: x-netlab; " in raw and "does not offer" in raw  # our verdict, not theirs
    if rcpt.isascii():
        assert statuses(dsn(lab.a, "alice@a.test")) == {rcpt: status}
    else:  # RFC 6533: the report that names a UTF-8 address is a global one
        assert "Content-Type: message/global-delivery-status" in raw
        assert f"Final-Recipient: utf-8; {rcpt}" in raw
    returned_headers = "message/global-headers" if "Grüße" in message else "text/rfc822-headers"
    assert f"Content-Type: {returned_headers}" in raw


async def test_eight_bit_mail_for_an_eight_bit_server_is_delivered(
    lab: Lab, autojump_clock: trio.testing.MockClock
) -> None:
    message = "Subject: Grüße\n\nÀ midi, chez Hélène\n".encode()
    await lab.queue(message=message)
    await lab.drain()
    (path,) = maildir_files(lab.b.root, "bob@b.test")
    content = path.read_bytes()
    assert content.endswith(message)
    assert b"with UTF8SMTP" in content  # the relay declared SMTPUTF8 (RFC 6531 section 3.4)
