"""``netlab rdt send``: send one file over the reliable transport to ``netlab rdt recv``.

Strategy: open one connection with the chosen protocol (Go-Back-N, Selective Repeat or
stop-and-wait), window, sequence-number bits and MSS; send the header line of
:mod:`netlab.proto.rdt_file`, then the file read a megabyte at a time in a worker thread (the
SHA-256 is computed there too), then EOF; wait for the receiver's answer.  Success means the
receiver said ``OK`` with the same size and SHA-256 as ours, i.e. the file is stored intact.
Anything else (no listener, retry limit, ``ERR``, a different checksum) exits non-zero with the
reason.

The MSS defaults to 60 KiB towards a loopback address (the loopback MTU is 64 KiB, and a large
segment keeps per-segment costs small against the bytes moved) and to 1200 bytes elsewhere (a
datagram that fits any IPv6 path without fragmentation).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click
import trio

from netlab.addr import format_hostport, is_loopback, parse_hostport
from netlab.aio.rdt import open_rdt_stream
from netlab.aio.rdt_stream import RdtStream
from netlab.cli import config_option, load_config
from netlab.proto.rdt_file import MAX_LINE, Reply, encode_request, parse_reply, sanitize_name
from netlab.transport.engine import TransportParams
from netlab.ui import Bar, TransferSummary, progress
from netlab.units import DURATION, SIZE

__all__ = ["SendResult", "TransferError", "command", "default_mss", "send_file"]

LOOPBACK_MSS = 60 << 10  # bytes
PATH_MSS = 1200  # bytes; 1200 + 20 (segment) + 8 (UDP) + 40 (IPv6) < 1280, the IPv6 minimum MTU
READ_CHUNK = 1 << 20  # bytes read from the file per worker-thread call
PROGRESS_INTERVAL = 0.1  # seconds between progress-bar updates
MIN_SEND_BUFFER = 1 << 20  # bytes


class TransferError(Exception):
    """The transfer did not end with the file stored intact; the text says why."""


@dataclass(frozen=True)
class SendResult:
    reply: Reply
    nbytes: int
    elapsed: float  # seconds, from the handshake's end to the receiver's OK
    stream: RdtStream


def default_mss(host: str) -> int:
    """The MSS to use towards ``host`` when none is given."""
    return LOOPBACK_MSS if is_loopback(host) else PATH_MSS


async def send_file(
    path: Path,
    host: str,
    port: int,
    params: TransportParams,
    *,
    name: str | None = None,
    bar: Bar | None = None,
) -> SendResult:
    """Send ``path`` and wait until the receiver confirms it stored it.

    Raises:
        TransferError: refused, failed, or stored with a different checksum.
        OSError: the file cannot be read.
    """
    file = await trio.to_thread.run_sync(path.open, "rb")
    try:
        size = os.fstat(file.fileno()).st_size
        try:
            stream = await open_rdt_stream(host, port, params)
        except (trio.BrokenResourceError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransferError(f"cannot connect to {format_hostport(host, port)}: {reason}") from exc
        try:
            return await _transfer(stream, file, size, name or path.name, bar)
        except trio.BrokenResourceError as exc:
            raise TransferError(f"connection to {format_hostport(host, port)} failed: {exc}") from exc
        finally:
            stream.abort()  # a no-op once the connection has closed normally
    finally:
        file.close()


async def _transfer(stream: RdtStream, file: BinaryIO, size: int, name: str, bar: Bar | None) -> SendResult:
    started = trio.current_time()
    digest = hashlib.sha256()
    answer: list[Reply | Exception] = []
    answered = trio.Event()
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        if bar is not None:
            nursery.start_soon(_show_progress, stream, bar)
        with trio.CancelScope() as sending:
            # The receiver may refuse early (too big, name taken, disk full): listen while sending.
            nursery.start_soon(_watch_for_answer, stream, answer, answered, sending)
            try:
                await _send_body(stream, file, size, name, digest)
            except (trio.BrokenResourceError, TransferError) as exc:
                failure = exc
        if failure is None:
            await answered.wait()
        nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - started
    reply = answer[0] if answer else failure
    if isinstance(reply, Exception):
        raise reply
    assert reply is not None
    if not reply.ok:
        raise TransferError(f"the receiver refused the file: {reply.reason}")
    if (reply.size, reply.sha256) != (size, digest.hexdigest()):
        raise TransferError(f"the receiver stored {reply.size} bytes with SHA-256 {reply.sha256}, not ours")
    await stream.aclose()
    return SendResult(reply, size, elapsed, stream)


async def _send_body(stream: RdtStream, file: BinaryIO, size: int, name: str, digest: hashlib._Hash) -> None:
    """The header line, the file's bytes (read and hashed in a worker thread), and EOF."""

    def read_and_hash() -> bytes:
        chunk = file.read(READ_CHUNK)
        digest.update(chunk)
        return chunk

    await stream.send_all(encode_request(size, name))
    sent = 0
    while chunk := await trio.to_thread.run_sync(read_and_hash):
        sent += len(chunk)
        if sent > size:
            break
        await stream.send_all(chunk)
    if sent != size:
        raise TransferError(f"the file changed while being sent ({size} bytes, then {sent})")
    await stream.send_eof()


async def _watch_for_answer(
    stream: RdtStream, answer: list[Reply | Exception], answered: trio.Event, sending: trio.CancelScope
) -> None:
    try:
        reply = await _read_reply(stream)
    except (trio.BrokenResourceError, TransferError) as exc:
        answer.append(exc)
    else:
        answer.append(reply)
        if not reply.ok:
            sending.cancel()
    finally:
        answered.set()


async def _read_reply(stream: RdtStream) -> Reply:
    line = bytearray()
    while chunk := await stream.receive_some(MAX_LINE):
        line += chunk
        if len(line) > MAX_LINE:
            raise TransferError("the receiver's answer is too long")
    if not line.endswith(b"\n"):
        raise TransferError("the receiver closed the connection without an answer")
    try:
        return parse_reply(bytes(line))
    except ValueError as exc:
        raise TransferError(f"the receiver's answer makes no sense: {exc}") from exc


async def _show_progress(stream: RdtStream, bar: Bar) -> None:
    while True:
        bar.update(stream.bytes_acknowledged)
        await trio.sleep(PROGRESS_INTERVAL)


@click.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--to", "to", metavar="HOST:PORT", help="The receiver (default: [rdt] listen, 127.0.0.1:9001).")
@click.option("--name", help="Name to store the file under (default: its own name).")
@click.option(
    "--protocol", type=click.Choice(["gbn", "sr", "saw"]), help="Go-Back-N, Selective Repeat, stop-and-wait."
)
@click.option("--window", type=int, help="Window N in segments (GBN: N <= 2**k - 1, SR: N <= 2**(k-1)).")
@click.option("--seq-bits", type=int, help="Sequence-number bits k, 3..32.")
@click.option("--mss", type=SIZE, help="Payload bytes per segment (default 60k on loopback, else 1200).")
@click.option("--max-retries", type=int, help="Expiries without progress before giving up.")
@click.option(
    "--initial-rto", type=DURATION, default="1s", show_default=True, help="Timeout before an RTT sample."
)
@click.option("--timeout", type=DURATION, help="Give up if the whole transfer takes longer (e.g. 30s).")
def command(
    config_file: Path | None,
    file: Path,
    to: str | None,
    name: str | None,
    protocol: str | None,
    window: int | None,
    seq_bits: int | None,
    mss: int | None,
    max_retries: int | None,
    initial_rto: float,
    timeout: float | None,
) -> None:
    """Send FILE reliably over UDP to `netlab rdt recv` and print a summary."""
    overrides = {
        "protocol": protocol,
        "window": window,
        "seq_bits": seq_bits,
        "mss": mss,
        "max_retries": max_retries,
    }
    rdt = load_config(config_file, {"rdt": overrides}).rdt
    try:
        host, port = parse_hostport(to or rdt.listen, default_port=9001)
        if port == 0:
            raise ValueError("the receiver's port cannot be 0")
        segment = rdt.mss or default_mss(host)
        params = TransportParams(
            protocol=rdt.protocol,
            window=rdt.window,
            seq_bits=rdt.seq_bits,
            mss=segment,
            max_retries=rdt.max_retries,
            initial_rto=initial_rto,
            # Room for two windows, so the window is never starved by a full buffer.
            send_buffer=max(MIN_SEND_BUFFER, 2 * rdt.window * segment),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    store_as = sanitize_name(name or file.name)
    size = file.stat().st_size

    async def main() -> SendResult:
        with progress(f"{file.name} -> {format_hostport(host, port)}", size) as bar:
            if timeout is None:
                return await send_file(file, host, port, params, name=store_as, bar=bar)
            with trio.fail_after(timeout):
                return await send_file(file, host, port, params, name=store_as, bar=bar)

    try:
        result = trio.run(main)
    except TransferError as exc:
        raise click.ClickException(str(exc)) from exc
    except trio.TooSlowError as exc:
        raise click.ClickException(f"gave up after {timeout:g} s") from exc
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror or exc}") from exc
    click.echo(
        f"sent {file.name!r} ({result.nbytes} bytes) to {format_hostport(host, port)}, "
        f"stored as {result.reply.name!r}, SHA-256 verified"
    )
    click.echo(
        f"  {params.protocol}, window {params.window}, {params.seq_bits}-bit sequence numbers, MSS {segment}"
    )
    for line in TransferSummary(result.nbytes, result.elapsed, result.stream.connection.stats).lines():
        click.echo(line)
    sys.stdout.flush()
