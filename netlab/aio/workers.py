"""Worker processes: one server spread over several processes that share its listening sockets.

Strategy (how mature servers use more than one core; postfix's master and its smtpd processes
work this way): the parent binds the listening sockets and starts fresh interpreters that
inherit them (``pass_fds``); it never forks itself, as a fork of a running trio process would
copy its threads' and its event loop's state mid-flight.  Every worker accepts on the same sockets,
and the kernel gives each new connection to whichever worker asks first, so a busy worker takes
fewer.  The parent serves nobody itself: it supervises, and does whatever must run once (the mail
relay).

Parent and worker talk over the worker's standard streams; stderr is the parent's, so the logs
of every process go to one place:

- the environment variable :data:`LISTEN_FDS` lists the inherited socket descriptors;
- stdin carries the setup, a line with its length in octets and then that many octets (the SMTP
  server sends its effective configuration), and then nothing: end-of-file means that the parent
  has gone, and the worker stops as if it had been told to;
- stdout carries reports, one per line: :data:`READY` once the worker accepts connections, then
  the server's own (the SMTP worker says when it queued mail for the parent's relay).  Reports
  are signals: identical ones pending at the same time are sent once.

Supervision: a worker that exits while the pool runs is logged and replaced after
:data:`RESTART_DELAY`.  A worker that exits (or stays silent) before it reports ready shows a
fault that restarting cannot fix (a bad configuration, a broken installation): the pool raises
:class:`WorkerError` and the server stops loudly.  When the lifetime stops, every worker gets
SIGTERM by its PID and drains its sessions the way a single server does; the pool returns once
all have exited.  If the pool is cancelled (the grace period ran out) the workers still running
get SIGKILL and are waited for, so no worker outlives its server.  Workers run in a session of
their own, so a Ctrl-C at the terminal reaches the parent alone and each worker sees one SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence

import trio

from netlab.aio.shutdown import Lifetime

__all__ = [
    "LISTEN_FDS",
    "READY",
    "ParentLink",
    "WorkerError",
    "WorkerPool",
    "inherited_sockets",
    "read_setup",
]

log = logging.getLogger(__name__)

#: The environment variable naming the inherited listening sockets ("5 6").
LISTEN_FDS = "NETLAB_LISTEN_FDS"
#: The report a worker sends once it accepts connections.
READY = "ready"
RESTART_DELAY = 1.0  # seconds before a worker that died is replaced
START_TIMEOUT = 30.0  # seconds a new worker has to report ready
MAX_REPORT = 4096  # bytes: a longer report line is cut


class WorkerError(ChildProcessError):
    """A worker process could not start."""


class _Lines:
    """Lines from a byte stream, without their newline; None at end-of-file."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> str | None:
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stream.receive_some(MAX_REPORT)
            if not chunk:
                return None
            self._buffer += chunk
            del self._buffer[:-MAX_REPORT]  # a worker's line is short: keep memory bounded
        line = self._buffer[:end].decode("utf-8", "replace")
        del self._buffer[: end + 1]
        return line


class WorkerPool:
    """``count`` processes running ``argv``, each with the parent's listening ``fds``.

    Args:
        name: what the logs call the workers ("smtp worker 1234 exited...").
        argv: the worker program (a fresh interpreter: ``[sys.executable, "-m", ...]``).
        count: how many workers to keep running.
        fds: the listening sockets' descriptors, inherited under the same numbers.
        setup: the octets every worker reads from its stdin first.
        on_report: called with each report line other than :data:`READY`.
        env: extra environment variables for the workers.
        cpus: pin worker *i* (and its successors) to CPU ``cpus[i % len(cpus)]``; empty: let
            the kernel place them.  A pinned worker's threads hand the GIL to each other on one
            CPU, and its caches stay warm.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        count: int,
        *,
        fds: Sequence[int],
        setup: bytes = b"",
        on_report: Callable[[str], None] = lambda _line: None,
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.cpus = tuple(cpus)
        self.argv = list(argv)
        self.count = count
        self.fds = tuple(fds)
        self.setup = setup
        self.on_report = on_report
        self.env = {**os.environ, **(env or {}), LISTEN_FDS: " ".join(map(str, self.fds))}
        #: The running workers' processes, by PID.
        self.processes: dict[int, trio.Process] = {}
        #: Workers that died and were replaced.
        self.restarts = 0
        self._stopping = False
        self._terminated: set[int] = set()

    @property
    def pids(self) -> list[int]:
        return sorted(self.processes)

    async def run(
        self, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the workers, keep them running until ``lifetime`` stops, then stop them all.

        ``task_status.started`` gets the workers' PIDs once every one of them is ready.

        Raises:
            WorkerError: a worker exited, or said nothing, before it was ready.
        """
        try:
            async with trio.open_nursery() as nursery:
                for slot in range(self.count):
                    await nursery.start(self._keep_one, slot)
                task_status.started(self.pids)
                await lifetime.stopping.wait()
                self._stopping = True
                for process in self.processes.values():
                    self._terminate(process)
        except* WorkerError as failed:
            raise failed.exceptions[0] from None  # the other workers were stopped on the way out

    async def _keep_one(self, slot: int, *, task_status: trio.TaskStatus[None]) -> None:
        """One worker slot: a worker, and its successor whenever it dies before the stop."""
        while not self._stopping:
            process = await trio.lowlevel.open_process(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=self.fds,
                env=self.env,
                start_new_session=True,
            )
            self.processes[process.pid] = process
            if self.cpus:
                # Before the new interpreter has started a thread: the ones it starts inherit it.
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(process.pid, {self.cpus[slot % len(self.cpus)]})
            if self._stopping:
                self._terminate(process)  # started while the pool was being stopped
            try:
                await self._serve_one(process, task_status)
            finally:
                del self.processes[process.pid]
                self._terminated.discard(process.pid)
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        _signal(process, signal.SIGKILL)
                    await process.wait()
                    assert process.stdin is not None and process.stdout is not None
                    await trio.aclose_forcefully(process.stdin)
                    await trio.aclose_forcefully(process.stdout)
            if self._stopping:
                return
            self.restarts += 1
            log.error(
                "%s worker %d exited with status %s; starting another in %gs",
                self.name,
                process.pid,
                process.returncode,
                RESTART_DELAY,
            )
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(RESTART_DELAY)

    async def _serve_one(self, process: trio.Process, task_status: trio.TaskStatus[None]) -> None:
        """Hand ``process`` its setup, wait until it is ready, then take its reports until it ends."""
        assert process.stdin is not None and process.stdout is not None
        reports = _Lines(process.stdout)
        first: str | None = None
        with trio.move_on_after(START_TIMEOUT) as waiting:
            with contextlib.suppress(trio.BrokenResourceError):  # if it died, end-of-file comes next
                await process.stdin.send_all(b"%d\n" % len(self.setup) + self.setup)
            first = await reports.next()
        if first != READY:
            if self._stopping:
                return  # stopped before it was ready: nothing is wrong
            _signal(process, signal.SIGKILL)
            status = await process.wait()
            why = f"said nothing for {START_TIMEOUT:g}s" if waiting.cancelled_caught else f"exited ({status})"
            raise WorkerError(f"{self.name} worker {process.pid} {why} before it was ready; see its log")
        log.debug("%s worker %d ready", self.name, process.pid)
        task_status.started()
        while (line := await reports.next()) is not None:
            self.on_report(line)
        await process.wait()

    def _terminate(self, process: trio.Process) -> None:
        """SIGTERM, once: a second one would tell the worker to stop without draining."""
        if process.pid not in self._terminated:
            self._terminated.add(process.pid)
            _signal(process, signal.SIGTERM)


def _signal(process: trio.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # exited between the check and the signal
            process.send_signal(signum)


# -- the worker's side ------------------------------------------------------------------------


def read_setup() -> bytes:
    """The setup the pool wrote to stdin (blocking; call it before ``trio.run``).

    Raises:
        WorkerError: stdin does not start with a complete setup.
    """
    header = b""
    while not header.endswith(b"\n"):
        octet = os.read(0, 1)
        if not octet or len(header) > 20:
            raise WorkerError("no setup on stdin: this program is started by a worker pool")
        header += octet
    remaining = int(header)
    chunks = []
    while remaining:
        chunk = os.read(0, remaining)
        if not chunk:
            raise WorkerError("the setup on stdin is cut short")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def inherited_sockets() -> list[socket.socket]:
    """The listening sockets the pool passed down (family and type are read from each)."""
    return [socket.socket(fileno=int(fd)) for fd in os.environ.get(LISTEN_FDS, "").split()]


class ParentLink:
    """The worker's end of its pipes: reports up on stdout, the parent's departure on stdin."""

    def __init__(self) -> None:
        self._pending: dict[str, None] = {}  # reports not yet written, in order, each once
        self._wake = trio.Event()

    def report(self, line: str) -> None:
        """Send ``line`` to the parent soon (never blocks; see :meth:`run`)."""
        self._pending[line] = None
        self._wake.set()

    async def run(self, lifetime: Lifetime) -> None:
        """Write reports until cancelled, and stop ``lifetime`` when stdin reaches end-of-file."""
        async with (
            trio.lowlevel.FdStream(os.dup(0)) as stdin,
            trio.lowlevel.FdStream(os.dup(1)) as stdout,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._write, stdout)
            while await stdin.receive_some(MAX_REPORT):
                pass  # the parent writes nothing after the setup
            log.warning("the parent process is gone: stopping")
            lifetime.stop()
            await trio.sleep_forever()

    async def _write(self, stdout: trio.lowlevel.FdStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            lines, self._pending = self._pending, {}
            await stdout.send_all("".join(f"{line}\n" for line in lines).encode())
