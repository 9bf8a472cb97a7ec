"""The reliable-transport receiver: ``netlab rdt recv`` and the ``rdt`` service of ``netlab up``.

Strategy: one :class:`~netlab.aio.rdt.RdtListener` on a UDP socket serves every sender at once;
each connection carries one file in the format of :mod:`netlab.proto.rdt_file` (a header line
with the name and size, the bytes, EOF).  The bytes go to an
:class:`~netlab.store.incoming.IncomingFile`, which becomes visible under its sanitised name only
once complete and fsynced, and never replaces an existing file (``name-1.ext`` is used instead).
Only then does the receiver answer ``OK`` with the SHA-256: the transport's acknowledgments say
the bytes arrived, the ``OK`` says they are stored.  A malformed header, a size over the limit,
a short transfer or a failed connection removes the temporary file and is answered with ``ERR``
when the connection still works.  Each transfer is one line in the ``rdt`` access log.

``netlab rdt recv --out FILE`` takes exactly one transfer, writes it to FILE, prints a summary
and exits 0, or non-zero with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.rdt import RdtListener
from netlab.aio.rdt_stream import RdtStream, socket_buffer_size
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.cli import config_option, load_config
from netlab.config import NetlabConfig, RdtConfig, data_path
from netlab.log import access_logger
from netlab.proto.rdt_file import (
    NEED_DATA,
    FileData,
    FileEnd,
    FileHeader,
    FileReceiver,
    RemoteProtocolError,
    encode_error,
    encode_ok,
    sanitize_name,
)
from netlab.store.incoming import IncomingFile
from netlab.transport.engine import TransportParams
from netlab.transport.segment import MAX_MSS
from netlab.ui import Bar, TransferSummary, progress
from netlab.units import SIZE

__all__ = ["Transfer", "command", "receive_transfer", "serve", "service"]

log = logging.getLogger(__name__)
access = access_logger("rdt")

DEFAULT_PORT = 9001
_REPLY_TIMEOUT = 10.0  # seconds to get an ERR line out on a connection that is going wrong


@dataclass(frozen=True)
class Transfer:
    """The outcome of one incoming transfer."""

    peer: str
    ok: bool
    name: str = ""  # as the sender sent it
    path: Path | None = None  # where it was stored
    nbytes: int = 0
    sha256: str = ""
    elapsed: float = 0.0  # seconds
    reason: str = ""


def listener_params(rdt: RdtConfig) -> TransportParams:
    """The limits the receiver accepts from a sender's SYN, from the ``[rdt]`` table."""
    return TransportParams(
        protocol=rdt.protocol,
        window=rdt.window,
        seq_bits=rdt.seq_bits,
        max_retries=rdt.max_retries,
        mss=MAX_MSS,  # a sender on loopback asks for large segments
    )


async def receive_transfer(
    stream: RdtStream,
    directory: Path,
    *,
    max_size: int,
    idle_timeout: float,
    out_name: str | None = None,
    bar: Bar | None = None,
) -> Transfer:
    """Receive one file from ``stream`` into ``directory`` and answer OK or ERR.

    Args:
        out_name: store under exactly this name (failing if it exists) instead of the sender's.
        bar: shows the bytes received.
    """
    peer = format_hostport(*stream.peer)
    started = trio.current_time()
    parser = FileReceiver(max_size=max_size)
    incoming: IncomingFile | None = None
    header: FileHeader | None = None
    try:
        while True:
            with trio.fail_after(idle_timeout):
                data = await stream.receive_some()
            parser.receive_data(data)
            while (event := parser.next_event()) is not NEED_DATA:
                if isinstance(event, FileHeader):
                    header = event
                    incoming = await IncomingFile.create(directory)
                elif isinstance(event, FileData):
                    assert incoming is not None
                    assert header is not None
                    await incoming.write(event.data)
                    if bar is not None:
                        bar.update(incoming.size, header.size)
                elif isinstance(event, FileEnd):
                    assert incoming is not None
                    assert header is not None
                    name = out_name or sanitize_name(header.name)
                    path = await incoming.commit(name, unique=out_name is None)
                    await _reply(stream, encode_ok(incoming.size, incoming.sha256, path.name))
                    return _logged(
                        Transfer(
                            peer, True, header.name, path, incoming.size, incoming.sha256, _since(started)
                        )
                    )
    except RemoteProtocolError as exc:
        await _reply(stream, exc.reply)
        return _failed(peer, header, started, f"protocol error: {exc}")
    except OSError as exc:
        await _reply(stream, encode_error(f"cannot store the file: {exc.strerror or exc}"))
        return _failed(peer, header, started, f"cannot store: {exc}")
    except trio.TooSlowError:
        await _reply(stream, encode_error(f"idle for {idle_timeout:g} s"))
        return _failed(peer, header, started, f"idle for {idle_timeout:g} s")
    except trio.BrokenResourceError as exc:
        return _failed(peer, header, started, f"connection failed: {exc}")
    finally:
        if incoming is not None:
            incoming.discard()  # a no-op once committed


async def _reply(stream: RdtStream, line: bytes) -> None:
    """Send the answer and our EOF, if the connection still works."""
    try:
        with trio.move_on_after(_REPLY_TIMEOUT):
            await stream.send_all(line)
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _since(started: float) -> float:
    return trio.current_time() - started


def _failed(peer: str, header: FileHeader | None, started: float, reason: str) -> Transfer:
    name = header.name if header else ""
    return _logged(Transfer(peer, False, name, elapsed=_since(started), reason=reason))


def _logged(t: Transfer) -> Transfer:
    # One line per transfer: peer, outcome, bytes, seconds, name sent, where stored (or why not).
    where = str(t.path) if t.ok else repr(t.reason)
    access.info("%s %s %d %.3f %r %s", t.peer, "OK" if t.ok else "ERR", t.nbytes, t.elapsed, t.name, where)
    return t


# -- running it -----------------------------------------------------------------------------------


async def serve(
    config: NetlabConfig,
    lifetime: Lifetime,
    *,
    out_file: Path | None = None,
    on_transfer: Callable[[Transfer, RdtStream], None] | None = None,
    bar: Bar | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Receive files until ``lifetime`` stops (or, with ``out_file``, after one transfer)."""
    rdt = config.rdt
    host, port = parse_hostport(rdt.listen, default_port=DEFAULT_PORT)
    params = listener_params(rdt)
    if out_file is not None:
        directory, out_name = out_file.parent, out_file.name
    else:
        directory, out_name = data_path(config, rdt.out_dir, "rdt"), None
        await trio.to_thread.run_sync(partial(directory.mkdir, parents=True, exist_ok=True))
    size = socket_buffer_size(params.window, 64 << 10)
    endpoint = await open_udp_endpoint(host, port, rcvbuf=size, sndbuf=size)
    listener = RdtListener(endpoint, params, max_connections=1 if out_file else rdt.max_connections)

    async def handler(stream: RdtStream) -> None:
        transfer = await receive_transfer(
            stream,
            directory,
            max_size=rdt.max_size,
            idle_timeout=rdt.idle_timeout,
            out_name=out_name,
            bar=bar,
        )
        if on_transfer is not None:
            on_transfer(transfer, stream)
        if out_file is not None:
            lifetime.stop()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(listener.serve, handler, stopping=lifetime.stopping))
            where = format_hostport(*endpoint.local_address)
            target = out_file if out_file is not None else f"{directory}/"
            task_status.started([f"reliable transport (udp) on {where}, files into {target}"])
    finally:
        await endpoint.aclose()


def service(config: NetlabConfig) -> Service | None:
    """The receiver for ``netlab up``; None when ``[rdt] enabled = false``."""
    if not config.rdt.enabled:
        return None
    return Service("rdt", partial(serve, config))


@click.command()
@config_option
@click.option("--listen", metavar="HOST:PORT", help="Where to listen (default from [rdt], 127.0.0.1:9001).")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Receive one transfer into FILE (which must not exist) and exit.",
)
@click.option("--out-dir", help="Directory for received files (default <data_dir>/rdt).")
@click.option("--window", type=int, help="Largest window accepted from a sender.")
@click.option("--seq-bits", type=int, help="Largest sequence-number width accepted.")
@click.option("--max-retries", type=int, help="Expiries without progress before giving up.")
@click.option("--max-size", type=SIZE, help="Largest file accepted (e.g. 1g).")
def command(
    config_file: Path | None,
    listen: str | None,
    out_file: Path | None,
    out_dir: str | None,
    window: int | None,
    seq_bits: int | None,
    max_retries: int | None,
    max_size: int | None,
) -> None:
    """Receive files sent with `netlab rdt send` (GBN, SR or stop-and-wait over UDP)."""
    overrides = {
        "listen": listen,
        "out_dir": out_dir,
        "window": window,
        "seq_bits": seq_bits,
        "max_retries": max_retries,
        "max_size": max_size,
    }
    config = load_config(config_file, {"rdt": overrides})
    if out_file is not None and out_file.exists():
        raise click.UsageError(f"{out_file} exists; the receiver never overwrites a file")
    if out_file is not None and not out_file.parent.is_dir():
        raise click.UsageError(f"no directory {out_file.parent} for --out")
    results: list[Transfer] = []

    def on_transfer(transfer: Transfer, stream: RdtStream) -> None:
        results.append(transfer)
        _print_transfer(transfer, stream)

    def on_started(_service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(line)
        sys.stdout.flush()

    try:
        # A progress bar only makes sense for the one transfer of --out (and only on a terminal).
        showing = progress(f"receiving {out_file.name}", None) if out_file else contextlib.nullcontext(None)
        with showing as bar:
            serve_fn = partial(serve, config, out_file=out_file, on_transfer=on_transfer, bar=bar)
            trio.run(
                partial(
                    run_services,
                    [Service("rdt", serve_fn)],
                    grace_period=config.general.grace_period,
                    on_started=on_started,
                )
            )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {config.rdt.listen}: {exc.strerror or exc}") from exc
    if out_file is not None and not (results and results[0].ok):
        reason = results[0].reason if results else "stopped before a transfer arrived"
        raise click.ClickException(f"no file received: {reason}")


def _print_transfer(t: Transfer, stream: RdtStream) -> None:
    if t.ok:
        click.echo(f"received {t.name!r} from {t.peer} into {t.path} (sha256 {t.sha256})")
    else:
        click.echo(f"transfer from {t.peer} failed: {t.reason}", err=True)
    for line in TransferSummary(t.nbytes, t.elapsed, stream.connection.stats).lines():
        click.echo(line)
    sys.stdout.flush()
