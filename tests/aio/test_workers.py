"""The worker pool with real processes: start, reports, restart, loud failure, stop, no leftovers.

The workers here are small programs built on the pool's worker side (read_setup, ParentLink,
inherited_sockets) that do what the setup tells them to, so every path of the supervisor runs
against real processes, real signals and a real inherited socket.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio

from netlab.aio import workers
from netlab.aio.shutdown import Lifetime
from netlab.aio.workers import READY, WorkerError, WorkerPool
from tests.processes import ROOT

pytestmark = pytest.mark.timeout(60)

#: A worker doing what its setup says: "serve" (report the inherited socket, then run until told to
#: stop), "fail" (exit before ready), "stubborn" (ready, then ignore SIGTERM), "silent".
FAKE_WORKER = """
import os, signal, sys, threading, time
import trio
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.aio.workers import READY, ParentLink, inherited_sockets, read_setup

mode = read_setup().decode()
if mode == "fail":
    sys.exit(3)
if mode == "silent":
    time.sleep(60)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

async def serve(lifetime, *, task_status):
    task_status.started([])
    await lifetime.stopping.wait()

async def main():
    lifetime, link = Lifetime(), ParentLink()
    ports = [str(s.getsockname()[1]) for s in inherited_sockets()]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, lifetime)
        def started(_svc, _lines):
            link.report(READY)
            link.report(f"{os.getpid()} listens on " + " ".join(ports))
            seen = []
            thread = threading.Thread(target=lambda: seen.extend(sorted(os.sched_getaffinity(0))))
            thread.start()
            thread.join()
            link.report(f"{os.getpid()} runs threads on CPUs {seen}")
        if mode == "stubborn":
            started(None, None)
            await trio.sleep_forever()
        await run_services([Service("fake", serve)], grace_period=5, on_started=started, lifetime=lifetime)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def make_pool(
    sock: socket.socket,
    mode: str,
    count: int,
    reports: trio.MemorySendChannel[str] | None = None,
    cpus: tuple[int, ...] = (),
) -> WorkerPool:
    return WorkerPool(
        "fake",
        [sys.executable, "-c", FAKE_WORKER],
        count,
        fds=[sock.fileno()],
        setup=mode.encode(),
        on_report=(lambda line: reports.send_nowait(line)) if reports is not None else (lambda _: None),
        env={"PYTHONPATH": str(ROOT)},
        cpus=cpus,
    )


def gone(pid: int) -> bool:
    """The process has exited and been reaped (its PID no longer names anything of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_workers_inherit_the_socket_report_and_stop_on_sigterm(listening: socket.socket) -> None:
    send, receive = trio.open_memory_channel[str](100)
    pool = make_pool(listening, "serve", 3, send)
    lifetime = Lifetime()
    port = listening.getsockname()[1]
    async with trio.open_nursery() as nursery:
        pids = await nursery.start(pool.run, lifetime)
        assert len(set(pids)) == 3 and pids == pool.pids
        assert not any(gone(pid) for pid in pids)
        reports = {await receive.receive() for _ in range(6)}
        assert {r for r in reports if "listens" in r} == {f"{pid} listens on {port}" for pid in pids}
        lifetime.stop()
    assert all(gone(pid) for pid in pids)
    assert pool.processes == {} and pool.restarts == 0


async def test_a_worker_that_dies_is_replaced(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "RESTART_DELAY", 0.05)
    send, receive = trio.open_memory_channel[str](100)
    pool = make_pool(listening, "serve", 2, send)
    lifetime = Lifetime()
    async with trio.open_nursery() as nursery:
        first = await nursery.start(pool.run, lifetime)
        for _ in range(2 * len(first)):
            await receive.receive()
        os.kill(first[0], signal.SIGKILL)
        with trio.fail_after(30):
            replacement = int((await receive.receive()).split()[0])  # the new worker's first report
            await receive.receive()
        assert replacement not in first
        assert sorted(pool.pids) == sorted([first[1], replacement])
        assert pool.restarts == 1
        lifetime.stop()
    assert all(gone(pid) for pid in [*first, replacement])


async def test_pinned_workers_and_their_threads_stay_on_their_cpus(listening: socket.socket) -> None:
    available = tuple(sorted(os.sched_getaffinity(0)))
    send, receive = trio.open_memory_channel[str](100)
    pool = make_pool(listening, "serve", 3, send, cpus=available)
    lifetime = Lifetime()
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run, lifetime)
        reports = [await receive.receive() for _ in range(6)]
        lifetime.stop()
    expected = [[available[slot % len(available)]] for slot in range(3)]
    seen = sorted(report.split("CPUs ")[1] for report in reports if "CPUs" in report)
    assert seen == sorted(str(cpus) for cpus in expected)


async def test_a_worker_that_cannot_start_fails_the_pool(listening: socket.socket) -> None:
    pool = make_pool(listening, "fail", 2)
    with pytest.raises(WorkerError, match=r"fake worker \d+ exited \(3\) before it was ready"):
        await pool.run(Lifetime())
    assert pool.processes == {}


async def test_a_silent_worker_fails_the_pool(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "START_TIMEOUT", 0.5)
    pool = make_pool(listening, "silent", 1)
    with pytest.raises(WorkerError, match=r"said nothing for 0.5s before it was ready"):
        await pool.run(Lifetime())
    assert pool.processes == {}


async def test_cancelling_the_pool_kills_workers_that_ignore_sigterm(listening: socket.socket) -> None:
    pool = make_pool(listening, "stubborn", 2)
    lifetime = Lifetime()
    async with trio.open_nursery() as nursery:
        pids = await nursery.start(pool.run, lifetime)
        lifetime.stop()
        await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()  # as run_services does when the grace period is over
    assert all(gone(pid) for pid in pids)


def test_a_worker_stops_when_its_parent_goes(listening: socket.socket) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), workers.LISTEN_FDS: str(listening.fileno())}
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=[listening.fileno()],
        env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"5\nserve")
        proc.stdin.flush()
        assert proc.stdout.readline() == f"{READY}\n".encode()
        proc.stdin.close()  # what the kernel does when the parent dies
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_refuses_to_run_without_a_setup() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from netlab.aio.workers import read_setup; read_setup()"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode != 0
    assert "started by a worker pool" in done.stderr
