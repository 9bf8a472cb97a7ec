"""The TFTP server: ``netlab tftpd``, and the ``tftp`` service of ``netlab up``.

Strategy: one socket on the well-known address receives requests and nothing else.  Each
accepted request becomes a transfer with its own fresh endpoint (its transfer ID, RFC 1350
section 4) and its own task, which runs a :class:`TftpSender` (read request) or
:class:`TftpReceiver` (write request) through :func:`netlab.aio.tftp.run_transfer`.  Since each
transfer has a socket to itself, no demultiplexing is needed beyond the request socket.

What happens to a request, in order:

1. It must decode, be an RRQ or WRQ, and use mode octet or netascii ("mail" is obsolete), else
   ERROR 4.
2. A copy of a request whose transfer is still running (same client address, same bytes) is a
   retransmission and is dropped: it must not start a second transfer.
3. Beyond ``max_transfers`` running transfers, the request is refused (ERROR 0, "busy").
4. The file is checked against the server's policy (:mod:`servers.tftp_paths`, uploads only
   with ``allow_upload``), the options are negotiated, and then the transfer's endpoint is
   opened with socket buffers sized for the negotiated window.  A refusal is sent from a fresh
   endpoint too, as the reply to a request always comes from a new transfer ID.

Uploads go to a temporary file that is fsynced and renamed into place before the final ACK.
Every transfer, refused ones included, ends with one access-log line: peer, request, file,
mode, negotiated options, bytes, duration, outcome.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.endpoint import Addr, DatagramEndpoint, open_udp_endpoint
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.aio.tftp import EndpointFactory, buffer_size, run_transfer
from netlab.aio.tftp_files import FileSink, FileSource
from netlab.cli import config_option, load_config
from netlab.config import ConfigError, NetlabConfig, TftpConfig, data_path
from netlab.log import access_logger
from netlab.proto.tftp_options import (
    BLKSIZE_MAX,
    BLKSIZE_MIN,
    WINDOWSIZE_MAX,
    ServerLimits,
    TransferOptions,
    format_options,
    negotiate_untrusted,
)
from netlab.proto.tftp_packet import (
    Error,
    ErrorCode,
    Opcode,
    RemoteProtocolError,
    Request,
    decode_packet_untrusted,
    encode,
)
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.store.atomic import AtomicFile
from servers.tftp_paths import open_for_read, target_for_write

__all__ = ["DEFAULT_PORT", "TftpServer", "command", "service"]

log = logging.getLogger(__name__)
access_log = access_logger("tftp")

DEFAULT_PORT = 6969  # netlab's unprivileged stand-in for port 69
#: Seconds an upload's final ACK is repeated for if the final DATA comes again (RFC 1350
#: section 6): tftp-hpa's and atftp's clients retransmit after 5 s by default.
UPLOAD_DALLY = 5.0
MODES = ("octet", "netascii")


class TftpServer:
    """A TFTP server serving one root directory.

    Args:
        config: the ``[tftp]`` settings.
        root: the directory served (created by :meth:`serve` if missing).
        open_endpoint: binds the request socket and every transfer's socket; tests pass an
            in-memory network's.

    Raises:
        ConfigError: a limit in ``config`` is outside what TFTP allows.
    """

    def __init__(
        self, config: TftpConfig, root: Path, *, open_endpoint: EndpointFactory = open_udp_endpoint
    ) -> None:
        if not BLKSIZE_MIN <= config.max_blksize <= BLKSIZE_MAX:
            raise ConfigError(f"tftp.max_blksize must be {BLKSIZE_MIN}-{BLKSIZE_MAX}")
        if not 1 <= config.max_windowsize <= WINDOWSIZE_MAX:
            raise ConfigError(f"tftp.max_windowsize must be 1-{WINDOWSIZE_MAX}")
        if config.timeout <= 0 or config.retries < 0 or config.max_transfers < 1:
            raise ConfigError("tftp.timeout must be > 0, tftp.retries >= 0, tftp.max_transfers >= 1")
        try:
            self._host, self._port = parse_hostport(config.listen, default_port=DEFAULT_PORT)
        except ValueError as exc:
            raise ConfigError(f"tftp.listen: {exc}") from exc
        self.config = config
        self.root = root
        self._open_endpoint = open_endpoint
        self._limits = ServerLimits(config.max_blksize, config.max_windowsize, config.max_upload_size)
        self._active: set[tuple[Addr, bytes]] = set()
        self.stats: collections.Counter[str] = collections.Counter()
        self.address: Addr | None = None

    async def serve(self, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        """Serve until ``lifetime.stopping``, then let running transfers finish."""
        await trio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))
        self.root = self.root.resolve()
        ep = await self._open_endpoint(self._host, self._port)
        self.address = ep.local_address
        async with trio.open_nursery() as transfers:
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(self._accept, ep, transfers)
                task_status.started([f"udp {format_hostport(*self.address)}  root {self.root}"])
                await lifetime.stopping.wait()
                acceptor.cancel_scope.cancel()
            await ep.aclose()
            if transfers.child_tasks:
                log.info("waiting for %d transfers to finish", len(transfers.child_tasks))

    async def _accept(self, ep: DatagramEndpoint, transfers: trio.Nursery) -> None:
        while True:
            data, peer = await ep.recvfrom()
            try:
                packet = decode_packet_untrusted(data)
            except RemoteProtocolError as exc:
                self.stats["malformed"] += 1
                log.info("malformed request from %s: %s", format_hostport(*peer), exc)
                await ep.sendto(encode(exc.error), peer)
                continue
            if type(packet) is Error:
                continue  # RFC 1350 section 7: an ERROR is never answered
            if type(packet) is not Request:
                self.stats["malformed"] += 1
                await ep.sendto(encode(Error(ErrorCode.ILLEGAL_OPERATION, "expected RRQ or WRQ")), peer)
                continue
            key = (peer, data)
            if key in self._active:
                self.stats["duplicate_requests"] += 1
                continue
            if len(self._active) >= self.config.max_transfers:
                self.stats["busy"] += 1
                self._log(peer, packet, {}, 0, 0.0, "refused: busy")
                await ep.sendto(encode(Error(ErrorCode.NOT_DEFINED, "server busy, try again later")), peer)
                continue
            self._active.add(key)
            transfers.start_soon(self._transfer, packet, peer, key)

    async def _transfer(self, request: Request, peer: Addr, key: tuple[Addr, bytes]) -> None:
        started, wall_started = trio.current_time(), time.time()
        oack: dict[str, str] = {}
        size, outcome, duration = 0, "cancelled", None
        source: FileSource | None = None
        sink: FileSink | None = None
        ep: DatagramEndpoint | None = None
        try:
            try:
                source, sink, oack, options = await self._prepare(request)
            except RemoteProtocolError as exc:
                outcome = f"refused: {exc.error}"
                self.stats["refused"] += 1
                await self._refuse(peer, exc.error)
                return
            bufsize = buffer_size(options.blksize, options.windowsize)
            ep = await self._open_endpoint(self._host, 0, rcvbuf=bufsize, sndbuf=bufsize)
            cfg = self.config
            machine: TftpSender | TftpReceiver
            if request.opcode == Opcode.RRQ:
                machine = TftpSender.server(options, oack, timeout=cfg.timeout, retries=cfg.retries)
            else:
                # The dally must outlast the client's retransmission interval, which we do not
                # know unless it was negotiated: cover the common 5 s default.
                dally = max(UPLOAD_DALLY, options.timeout or 0)
                machine = TftpReceiver.server(
                    options,
                    oack,
                    max_size=cfg.max_upload_size,
                    timeout=cfg.timeout,
                    retries=cfg.retries,
                    dally=dally,
                )
            run_started = trio.current_time()
            result = await run_transfer(ep, peer, machine, source=source, sink=sink)
            size, outcome = result.size, result.describe()
            duration = run_started - started + result.duration  # without an upload's dally
            self.stats["completed" if result.ok else "failed"] += 1
            self.stats["wrong_tid"] += result.strangers
        except OSError as exc:
            # The host ran short (no free ports, too many open files...): this transfer fails,
            # the server goes on.
            log.warning("transfer for %s failed: %s", format_hostport(*peer), exc)
            outcome = f"failed: {exc.strerror or exc}"
            self.stats["failed"] += 1
        finally:
            self._active.discard(key)
            if source is not None:
                source.close()
            if sink is not None:
                sink.discard()  # a no-op once the file is stored
            if ep is not None:
                with trio.CancelScope(shield=True):
                    await ep.aclose()
            if duration is None:
                duration = trio.current_time() - started
            self._log(peer, request, oack, size, duration, outcome, started=wall_started)

    async def _prepare(
        self, request: Request
    ) -> tuple[FileSource | None, FileSink | None, dict[str, str], TransferOptions]:
        """Check the request against the policy, open its file, negotiate its options.

        Raises:
            RemoteProtocolError: the ERROR that refuses the request.
        """
        if request.mode not in MODES:
            raise RemoteProtocolError(ErrorCode.ILLEGAL_OPERATION, f"unsupported mode {request.mode!r}")
        netascii = request.mode == "netascii"
        if request.opcode == Opcode.RRQ:
            file, file_size = await trio.to_thread.run_sync(open_for_read, self.root, request.filename)
            try:
                # tsize is the size on the wire, which for netascii is unknown until the whole
                # file has been read; like tftpd-hpa, leave tsize unacknowledged then.
                known = None if netascii else file_size
                oack, options = negotiate_untrusted(request, self._limits, file_size=known)
            except RemoteProtocolError:
                file.close()
                raise
            return FileSource(file, netascii=netascii), None, oack, options
        if not self.config.allow_upload:
            raise RemoteProtocolError(ErrorCode.ACCESS_VIOLATION, "uploads are disabled")
        overwrite = self.config.overwrite
        target = await trio.to_thread.run_sync(
            partial(target_for_write, self.root, request.filename, overwrite=overwrite)
        )
        oack, options = negotiate_untrusted(request, self._limits, file_size=None)
        try:
            stored = await trio.to_thread.run_sync(partial(AtomicFile, target, overwrite=overwrite))
        except OSError as exc:
            raise RemoteProtocolError(ErrorCode.ACCESS_VIOLATION, exc.strerror or "cannot create") from None
        return None, FileSink(stored, netascii=netascii), oack, options

    async def _refuse(self, peer: Addr, error: Error) -> None:
        ep = await self._open_endpoint(self._host, 0)
        try:
            await ep.sendto(encode(error), peer)
        finally:
            await ep.aclose()

    def _log(
        self,
        peer: Addr,
        request: Request,
        oack: dict[str, str],
        size: int,
        duration: float,
        outcome: str,
        *,
        started: float | None = None,
    ) -> None:
        """One access-log line, stamped with the wall-clock time the transfer ended: ``started``
        (wall clock) plus ``duration``.  An upload's line is written after its dally."""
        ended = time.time() if started is None else started + duration
        access_log.info(
            "%.3f %s %s %s %s %s %d %.3f %s",
            ended,
            format_hostport(*peer),
            request.opcode.name,
            json.dumps(request.filename),
            request.mode,
            format_options(oack),
            size,
            duration,
            outcome,
        )


def service(config: NetlabConfig) -> Service | None:
    """The ``tftp`` service of ``netlab up`` (None when ``[tftp] enabled = false``)."""
    if not config.tftp.enabled:
        return None
    server = TftpServer(config.tftp, data_path(config, config.tftp.root, "tftp"))
    return Service("tftp", server.serve)


@click.command("tftpd")
@config_option
@click.option(
    "--listen", metavar="HOST:PORT", help="Address of the request socket [default: 127.0.0.1:6969]."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to serve [default: <data_dir>/tftp].",
)
@click.option("--allow-upload/--no-allow-upload", default=None, help="Accept write requests [default: no].")
@click.option("--overwrite/--no-overwrite", default=None, help="Let uploads replace files [default: no].")
@click.option("--max-upload-size", type=click.IntRange(0), metavar="BYTES", help="Largest upload accepted.")
@click.option("--max-transfers", type=click.IntRange(1), help="Transfers running at once.")
@click.option("--max-blksize", type=click.IntRange(BLKSIZE_MIN, BLKSIZE_MAX), help="Largest blksize granted.")
@click.option("--max-windowsize", type=click.IntRange(1, WINDOWSIZE_MAX), help="Largest windowsize granted.")
@click.option("--timeout", type=click.FloatRange(min=0.001, min_open=False), help="Seconds before resending.")
@click.option("--retries", type=click.IntRange(0), help="Timeouts in a row before giving up.")
def command(config_file: Path | None, root: Path | None, **flags: object) -> None:
    """Serve a directory over TFTP (RFC 1350 with blksize, timeout, tsize and windowsize)."""
    overrides = {**flags, "root": str(root) if root is not None else None}
    config = load_config(config_file, {"tftp": overrides})
    try:
        server = TftpServer(config.tftp, data_path(config, config.tftp.root, "tftp"))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc

    def on_started(svc: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(f"tftpd: {line}")
        sys.stdout.flush()  # a parent process may be waiting for this line

    trio.run(
        partial(
            run_services,
            [Service("tftp", server.serve)],
            grace_period=config.general.grace_period,
            on_started=on_started,
        )
    )
