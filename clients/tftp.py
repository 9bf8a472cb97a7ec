"""``netlab tftp``: get and put files over TFTP.

Strategy: the client is the same two machines as the server, constructed from the other end:
a :class:`TftpReceiver` sends the RRQ of a ``get``, a :class:`TftpSender` the WRQ of a ``put``,
and :func:`netlab.aio.tftp.run_transfer` drives either on a fresh endpoint, adopting the
server's transfer ID from its first reply.  Options are asked for only when given (tsize by
default, for the progress bar and the server's early size check); a server that ignores them
is answered with RFC 1350 defaults (RFC 2347 section 4), and an OACK that grants what was not
asked is refused with ERROR 8.

A downloaded file is written to a temporary file beside the target and renamed into place only
when complete, so a failed ``get`` neither leaves a partial file nor spoils an existing one.
The progress bar (on a terminal) is redrawn by its own task ten times a second from the
machine's counters, so the transfer loop does no drawing.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.endpoint import Addr, open_udp_endpoint
from netlab.aio.tftp import EndpointFactory, TransferOutcome, buffer_size, run_transfer
from netlab.aio.tftp_files import FileSink, FileSource
from netlab.proto.tftp_options import (
    BLKSIZE_MAX,
    BLKSIZE_MIN,
    TIMEOUT_MAX,
    TIMEOUT_MIN,
    WINDOWSIZE_MAX,
    request_options,
)
from netlab.proto.tftp_packet import ErrorCode
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.proto.tftp_transfer import DEFAULT_RETRIES, DEFAULT_TIMEOUT, Event, Negotiated
from netlab.store.atomic import AtomicFile

__all__ = ["DEFAULT_PORT", "ClientOptions", "TftpClientError", "command", "get_file", "put_file"]

DEFAULT_PORT = 69  # RFC 1350: the well-known port
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks
#: A progress callback: (bytes so far, total bytes if known).
ProgressFn = Callable[[int, int | None], None]


class TftpClientError(Exception):
    """A transfer that could not be done; the text says why, for a human."""


@dataclass(frozen=True)
class ClientOptions:
    """What a client asks for; None leaves an option out of the request."""

    mode: str = "octet"
    blksize: int | None = None
    windowsize: int | None = None
    #: Seconds; also our own retransmission interval (default 1 s when not negotiated).
    timeout: int | None = None
    #: Exchange the transfer size (RFC 2349): for the progress bar and the server's size check.
    #: Octet mode only: a netascii file's size on the wire is not its size on disk, and
    #: tftpd-hpa refuses the option for netascii.
    tsize: bool = True
    retries: int = DEFAULT_RETRIES

    def request(self, tsize: int | None) -> dict[str, str]:
        return request_options(
            blksize=self.blksize, windowsize=self.windowsize, timeout=self.timeout, tsize=tsize
        )

    @property
    def interval(self) -> float:
        return float(self.timeout or DEFAULT_TIMEOUT)


async def get_file(
    server: Addr,
    remote: str,
    local: Path,
    options: ClientOptions = ClientOptions(),
    *,
    open_endpoint: EndpointFactory = open_udp_endpoint,
    on_progress: ProgressFn | None = None,
) -> TransferOutcome:
    """Download ``remote`` from ``server`` into ``local``.

    Raises:
        TftpClientError: the local file cannot be created.
    """
    requested = options.request(0 if options.tsize and options.mode == "octet" else None)
    try:
        stored = await trio.to_thread.run_sync(partial(AtomicFile, local, overwrite=True))
    except OSError as exc:
        raise TftpClientError(f"cannot write {local}: {exc.strerror}") from exc
    machine = TftpReceiver.client(
        remote, options.mode, requested, timeout=options.interval, retries=options.retries
    )
    sink = FileSink(stored, netascii=options.mode == "netascii")
    try:
        return await _run(server, machine, requested, open_endpoint, on_progress, sink=sink)
    finally:
        sink.discard()  # a no-op once the file is stored


async def put_file(
    server: Addr,
    local: Path,
    remote: str,
    options: ClientOptions = ClientOptions(),
    *,
    open_endpoint: EndpointFactory = open_udp_endpoint,
    on_progress: ProgressFn | None = None,
) -> TransferOutcome:
    """Upload ``local`` to ``server`` as ``remote``.

    Raises:
        TftpClientError: the local file cannot be read.
    """
    netascii = options.mode == "netascii"
    try:
        file = await trio.to_thread.run_sync(local.open, "rb")
    except OSError as exc:
        raise TftpClientError(f"cannot read {local}: {exc.strerror}") from exc
    try:
        size = None
        if options.tsize and not netascii:
            size = await trio.to_thread.run_sync(lambda: os.fstat(file.fileno()).st_size)
        requested = options.request(size)
        machine = TftpSender.client(
            remote, options.mode, requested, timeout=options.interval, retries=options.retries
        )
        source = FileSource(file, netascii=netascii)
        return await _run(server, machine, requested, open_endpoint, on_progress, source=source, total=size)
    finally:
        file.close()


async def _run(
    server: Addr,
    machine: TftpSender | TftpReceiver,
    requested: dict[str, str],
    open_endpoint: EndpointFactory,
    on_progress: ProgressFn | None,
    *,
    source: FileSource | None = None,
    sink: FileSink | None = None,
    total: int | None = None,
) -> TransferOutcome:
    blksize = int(requested.get("blksize", 512))
    bufsize = buffer_size(blksize, int(requested.get("windowsize", 1)))
    wildcard = "::" if ":" in server[0] else "0.0.0.0"
    ep = await open_endpoint(wildcard, 0, rcvbuf=bufsize, sndbuf=bufsize)
    known_total = [total]

    def on_event(event: Event) -> None:
        if type(event) is Negotiated and event.options.tsize is not None and sink is not None:
            known_total[0] = event.options.tsize

    async def report() -> None:
        assert on_progress is not None
        while True:
            on_progress(machine.bytes_transferred, known_total[0])
            await trio.sleep(PROGRESS_INTERVAL)

    try:
        async with trio.open_nursery() as nursery:
            if on_progress is not None:
                nursery.start_soon(report)
            outcome = await run_transfer(
                ep, server, machine, source=source, sink=sink, lock_peer=True, on_event=on_event
            )
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await ep.aclose()
    if on_progress is not None and outcome.ok:
        on_progress(outcome.size, outcome.size)
    return outcome


# -- the command ------------------------------------------------------------------------------


def _transfer_flags(f: Callable[..., None]) -> Callable[..., None]:
    flags = [
        click.option("--mode", type=click.Choice(["octet", "netascii"]), default="octet", show_default=True),
        click.option(
            "--blksize", type=click.IntRange(BLKSIZE_MIN, BLKSIZE_MAX), help="Ask for this block size."
        ),
        click.option(
            "--windowsize", type=click.IntRange(1, WINDOWSIZE_MAX), help="Ask for this window (RFC 7440)."
        ),
        click.option(
            "--timeout", type=click.IntRange(TIMEOUT_MIN, TIMEOUT_MAX), help="Ask for this timeout (seconds)."
        ),
        click.option("--tsize/--no-tsize", default=True, show_default=True, help="Exchange the file size."),
    ]
    for flag in reversed(flags):
        f = flag(f)
    return f


@click.group("tftp")
def command() -> None:
    """TFTP client: get and put files (RFC 1350, blksize, timeout, tsize, windowsize)."""


@command.command("get")
@click.argument("server", metavar="HOST[:PORT]")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_transfer_flags
def get(server: str, remote: str, local: Path | None, **flags: Any) -> None:
    """Download REMOTE from the server into LOCAL (default: REMOTE's base name)."""
    local = local or Path(PurePosixPath(remote).name)
    _main("get", server, remote, local, flags)


@command.command("put")
@click.argument("server", metavar="HOST[:PORT]")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_transfer_flags
def put(server: str, remote: str, local: Path | None, **flags: Any) -> None:
    """Upload LOCAL (default: REMOTE) to the server as REMOTE."""
    _main("put", server, remote, local or Path(remote), flags)


def _main(direction: str, server_text: str, remote: str, local: Path, flags: dict[str, Any]) -> None:
    try:
        host, port = parse_hostport(server_text, default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST[:PORT]") from exc
    where = format_hostport(host, port)
    try:
        outcome = trio.run(partial(_transfer, direction, host, port, remote, local, flags))
    except TftpClientError as exc:
        raise click.ClickException(str(exc)) from exc
    if not outcome.ok:
        raise click.ClickException(_explain(outcome, where))
    seconds = outcome.duration
    rate = outcome.size / seconds / 1e6 if seconds > 0 else math.inf
    arrow = f"{where}:{remote} -> {local}" if direction == "get" else f"{local} -> {where}:{remote}"
    click.echo(f"{direction} {arrow}: {outcome.size} bytes in {seconds:.2f} s ({rate:.1f} MB/s)")


async def _transfer(
    direction: str, host: str, port: int, remote: str, local: Path, flags: dict[str, Any]
) -> TransferOutcome:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        raise TftpClientError(f"cannot resolve {host}: {exc}") from exc
    # Prefer IPv4: "localhost" often resolves to ::1 first, and TFTP servers listen on IPv4.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    address = infos[0][4]
    server: Addr = (str(address[0]), int(address[1]))
    options = ClientOptions(**flags)
    with _progress_bar(remote if direction == "get" else str(local)) as on_progress:
        if direction == "get":
            outcome = await get_file(server, remote, local, options, on_progress=on_progress)
        else:
            outcome = await put_file(server, local, remote, options, on_progress=on_progress)
    return outcome


def _explain(outcome: TransferOutcome, where: str) -> str:
    error = outcome.error
    if error is None:  # pragma: no cover
        return "transfer failed"
    if outcome.by_peer:
        return f"server {where} refused: {error}"
    if error.code == ErrorCode.NOT_DEFINED and error.message.startswith("timed out"):
        return f"no answer from {where}: {error.message}"
    return f"transfer aborted: {error}"


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[ProgressFn | None]:
    """A rich progress bar on stderr when it is a terminal; no callback otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
