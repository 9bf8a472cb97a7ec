"""SMTP served by several worker processes on one port (``smtp.workers``), on real sockets.

Every message lands exactly once whichever worker took it; mail a worker queued for another
domain wakes the relay in the parent; a killed worker does not stop the service; and a stop
leaves no process behind.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from netlab.aio.shutdown import Lifetime
from netlab.aio.workers import ParentLink
from netlab.config import ConfigError, NetlabConfig, override
from servers import smtp
from servers.mail_system import MailSystem
from servers.smtp_session import handle_connection
from servers.smtp_worker import serve_worker
from tests.mailtest import (
    FakeSocketStream,
    LineClient,
    maildir_files,
    make_mail,
    netlab_process,
    smtp_context,
    write_config,
)
from tests.processes import netlab
from tests.servers.test_relay import FakeDns, FakeNet

pytestmark = pytest.mark.timeout(120)

USER = "alice@example.test"


@dataclass
class Pool:
    mail: MailSystem
    port: int
    pids: list[int]
    lifetime: Lifetime


def worker_config(mail: MailSystem, workers: int, **smtp_settings: Any) -> NetlabConfig:
    settings = {"store": str(mail.root), "hostname": "mx.test", "workers": workers, **smtp_settings}
    return override(override(NetlabConfig(), "smtp", settings), "general", {"grace_period": 10.0})


@asynccontextmanager
async def serving(mail: MailSystem, workers: int, **kwargs: Any) -> AsyncIterator[Pool]:
    """``smtp.serve`` with ``workers`` processes on a real port; stopped (and checked) on exit."""
    settings = kwargs.pop("smtp", {})
    listeners = list(await trio.open_tcp_listeners(0, host="127.0.0.1"))
    lifetime = Lifetime()
    cfg = worker_config(mail, workers, **settings)
    async with trio.open_nursery() as nursery:
        lines = await nursery.start(
            partial(smtp.serve, cfg, lifetime, listeners=listeners, mail=mail, **kwargs)
        )
        match = re.search(r"served by (\d+) worker processes \(pids ([\d, ]+)\)", lines[-1])
        assert match is not None, lines
        pids = [int(pid) for pid in match[2].split(", ")]
        assert int(match[1]) == len(pids) == workers
        yield Pool(mail, listeners[0].socket.getsockname()[1], pids, lifetime)
        before = children()
        lifetime.stop()
    assert not before & children()  # every worker the pool ran, replacements included, is gone
    assert all(gone(pid) for pid in before)


def children() -> set[int]:
    """The PIDs of this process's children."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def send(port: int, number: int, to: str = USER) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        message = f"From: <a@far.test>\r\nTo: <{to}>\r\nSubject: message {number}\r\n\r\nhello\r\n"
        client.sendmail("a@far.test", [to], message.encode())


async def send_all(port: int, numbers: range) -> None:
    async with trio.open_nursery() as nursery:
        for number in numbers:
            nursery.start_soon(partial(trio.to_thread.run_sync, send, port, number))


def delivered(mail: MailSystem) -> list[tuple[str, int]]:
    """(subject, PID of the process that stored it) for every message of USER."""
    out = []
    for path in maildir_files(mail.root, USER):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        pid = re.search(r"P(\d+)Q", path.name)
        assert pid is not None
        out.append((str(message["Subject"]), int(pid[1])))
    return out


async def test_every_message_lands_once_whichever_worker_takes_it(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,), threads=True)
    async with serving(mail, 3) as pool:
        sent = 0
        # Connections go to whichever worker accepts first: send until two have stored mail.
        while sent < 200 and len({pid for _, pid in delivered(mail)}) < 2:
            await send_all(pool.port, range(sent, sent + 20))
            sent += 20
        stored = delivered(mail)
        assert sorted(subject for subject, _ in stored) == sorted(f"message {n}" for n in range(sent))
        assert {pid for _, pid in stored} <= set(pool.pids)
        assert len({pid for _, pid in stored}) >= 2


async def test_mail_a_worker_queues_is_relayed_by_the_parent(tmp_path: Path, nursery: trio.Nursery) -> None:
    mail = make_mail(tmp_path / "here", users=(USER,), threads=True)
    far = make_mail(tmp_path / "far", ("far.test",), ("bob@far.test",))
    arrived = trio.Event()

    async def far_server(stream: trio.abc.Stream) -> None:
        await handle_connection(stream, smtp_context(far))
        arrived.set()

    dns = FakeDns(mx={"far.test": [(10, "mx.far.test")]}, a={"mx.far.test": ["192.0.2.7"]})
    net = FakeNet(nursery, {"192.0.2.7": far_server})
    settings = {"trusted_networks": ["127.0.0.0/8"]}
    async with serving(mail, 2, smtp=settings, resolver=dns, connect=net.connect) as pool:
        await trio.to_thread.run_sync(send, pool.port, 1, "bob@far.test")
        # Only the parent runs the relay, and without the worker's report it would sleep forever.
        with trio.fail_after(30):
            await arrived.wait()
    (path,) = maildir_files(far.root, "bob@far.test")
    assert b"Subject: message 1" in path.read_bytes()
    assert mail.queue.entries() == []


async def test_a_killed_worker_does_not_stop_the_service(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,), threads=True)
    async with serving(mail, 2) as pool:
        os.kill(pool.pids[0], signal.SIGKILL)
        await send_all(pool.port, range(10))
        assert sorted(subject for subject, _ in delivered(mail)) == sorted(f"message {n}" for n in range(10))


async def test_a_stop_lets_the_workers_finish_messages_in_progress(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,), threads=True)

    async def client(port: int, *lines: str) -> LineClient:
        c = LineClient(await trio.open_tcp_stream("127.0.0.1", port))
        assert await c.code() == 220
        for line in lines:
            await c.send(line)
            assert await c.code() in (250, 354)
        return c

    async with serving(mail, 2) as pool:
        sending = await client(
            pool.port, "HELO c.test", "MAIL FROM:<a@far.test>", f"RCPT TO:<{USER}>", "DATA"
        )
        # Idle sessions on (almost surely) every worker: their 421s show the workers are stopping.
        idle = [await client(pool.port, "HELO c.test") for _ in range(10)]
        pool.lifetime.stop()
        with trio.fail_after(30):
            for c in idle:
                assert (await c.reply()) == (421, "4.3.2 mx.test Service shutting down")
        await sending.send("Subject: message 1", "", "hello", ".")
        assert await sending.code() == 250
        assert await sending.reply() == (421, "4.3.2 mx.test Service shutting down")
    assert [subject for subject, _ in delivered(mail)] == ["message 1"]


async def test_workers_need_socket_listeners(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,))
    cfg = worker_config(mail, 2)
    with pytest.RaisesGroup(ConfigError, allow_unwrapped=True, flatten_subgroups=True):
        await smtp.serve(cfg, Lifetime(), listeners=[_NoSocketListener()], mail=mail)


async def test_zero_workers_is_a_configuration_error(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,))
    with pytest.raises(ConfigError, match="at least 1"):
        await smtp.serve(worker_config(mail, 0), Lifetime(), listeners=[_NoSocketListener()], mail=mail)


class _NoSocketListener(trio.abc.Listener[trio.abc.Stream]):
    async def accept(self) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


async def test_a_worker_reports_the_mail_it_queues(tmp_path: Path) -> None:
    mail = make_mail(tmp_path, users=(USER,))
    reports: list[str] = []

    class Link(ParentLink):
        def report(self, line: str) -> None:
            reports.append(line)

    client, server = trio.testing.memory_stream_pair()
    listener = _OneStream(FakeSocketStream(server, "127.0.0.1"))
    cfg = worker_config(mail, 2, trusted_networks=["127.0.0.0/8"])
    lifetime = Lifetime()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(serve_worker, cfg, lifetime, listeners=[listener], link=Link(), mail=mail)
        )
        c = LineClient(client)
        assert await c.code() == 220
        for line, code in (
            ("HELO c.test", 250),
            ("MAIL FROM:<alice@example.test>", 250),
            ("RCPT TO:<bob@far.test>", 250),
            ("DATA", 354),
            ("Subject: hi\r\n\r\nhello\r\n.", 250),
        ):
            await c.send(line)
            assert await c.code() == code, line
        await trio.testing.wait_all_tasks_blocked()
        assert reports == [smtp.QUEUED]
        lifetime.stop()
    assert len(mail.queue.entries()) == 1


class _OneStream(trio.abc.Listener[trio.abc.Stream]):
    """A listener that hands out one prepared stream, then waits."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream: trio.abc.Stream | None = stream

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if self.stream is None:
            await trio.sleep_forever()
        stream, self.stream = self.stream, None
        assert stream is not None
        return stream

    async def aclose(self) -> None:
        pass


def test_smtpd_with_workers_stops_cleanly(tmp_path: Path) -> None:
    mail = make_mail(tmp_path / "store", users=(USER,))
    cfg = write_config(tmp_path / "netlab.toml", mail.root, general={"grace_period": 10.0})
    with netlab_process(
        ["smtpd", "--config", str(cfg), "--workers", "2"], "smtp", tmp_path / "log"
    ) as server:
        assert server.proc.stdout is not None
        line = server.proc.stdout.readline()
        assert "served by 2 worker processes" in line
        pids = [int(pid) for pid in re.findall(r"\d+", line.split("pids", 1)[1])]
        send(server.port, 1)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    assert all(gone(pid) for pid in pids)
    assert [subject for subject, _ in delivered(mail)] == ["message 1"]


def test_smtpd_reports_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "netlab.toml", tmp_path / "store", smtp={"workers": 0})
    done = netlab("smtpd", "--config", str(cfg))
    assert done.returncode == 1
    assert "Error: smtp.workers: at least 1 process serves connections, not 0" in done.stderr
    assert "Traceback" not in done.stderr
