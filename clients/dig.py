"""``netlab dig``: ask a DNS server a question, or trace a name down from the root.

Strategy: arguments the way dig takes them (``NAME [TYPE] [CLASS] @SERVER[:PORT] +option``),
one query through :mod:`netlab.aio.dns_exchange` (UDP, then TCP if the reply is truncated, as
dig does), and output in dig's layout (:mod:`clients.dig_output`).  ``+trace`` runs the
resolver's own iteration machine (:mod:`netlab.proto.dns_resolve`, set up as dig +trace
iterates: no cache, full names, CNAMEs shown rather than followed) from root hints instead of
asking one server, printing every step: by default the hints and port of a running lab
(``netlab lab up`` records them), else the lab's shipped hints on port 53.
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
import trio
from dnslib import CLASS, EDNS0, QTYPE, DNSQuestion, DNSRecord

from clients.dig_output import format_reply, format_rr, format_short, received_line
from netlab import __version__
from netlab.addr import format_hostport, parse_hostport
from netlab.aio.dns_exchange import ExchangeError, exchange_tcp, exchange_udp
from netlab.aio.dns_iterate import resolve_once
from netlab.aio.endpoint import Addr
from netlab.cli import config_option, load_config
from netlab.config import NetlabConfig
from netlab.lab import root_hints_path, running_lab, state_dir
from netlab.proto.dns_hints import parse_root_hints
from netlab.proto.dns_resolve import NoReply, Resolver, Step
from netlab.proto.dns_rrset import name_of, to_text
from netlab.proto.dns_wire import (
    DEFAULT_UDP_PAYLOAD,
    Rcode,
    RemoteProtocolError,
    Transport,
    parse_message_untrusted,
    rcode_text,
)

__all__ = ["DigArgs", "command", "parse_dig_args"]

TCP_TIMEOUT = 10.0  # seconds


@dataclass
class DigArgs:
    name: str = "."
    qtype: int = QTYPE.A
    qclass: int = CLASS.IN
    server: str | None = None
    server_port: int | None = None
    tcp: bool = False
    recurse: bool = True
    trace: bool = False
    short: bool = False
    edns: bool = True
    bufsize: int = DEFAULT_UDP_PAYLOAD
    wait: float = 5.0  # seconds per try (+time)
    tries: int = 3


def parse_dig_args(words: tuple[str, ...], reverse: str | None = None) -> DigArgs:
    """dig's free-form arguments: a name, a type, a class, ``@server``, ``+options``.

    Raises:
        click.UsageError: an argument dig would not take.
    """
    args = DigArgs()
    names: list[str] = []
    for word in words:
        if word.startswith("@"):
            try:
                args.server, args.server_port = _server(word[1:])
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
        elif word.startswith("+"):
            _option(args, word[1:])
        elif word.upper() in ("IN", "CH", "HS"):
            args.qclass = getattr(CLASS, word.upper()) if word.upper() != "HS" else 4
        elif _qtype(word) is not None and (names or reverse):
            args.qtype = _qtype(word) or QTYPE.A
        else:
            names.append(word)
    if reverse is not None:
        try:
            names.insert(0, ipaddress.ip_address(reverse).reverse_pointer)
        except ValueError as exc:
            raise click.UsageError(f"-x: {exc}") from exc
        if args.qtype == QTYPE.A:
            args.qtype = QTYPE.PTR
    if len(names) > 1:
        raise click.UsageError(f"one name at a time (got {', '.join(names)})")
    if names:
        args.name = names[0]
    elif not args.trace:
        args.qtype = QTYPE.NS if args.qtype == QTYPE.A else args.qtype  # dig with no name asks ". NS"
    return args


def _server(text: str) -> tuple[str, int | None]:
    if text.count(":") == 1 or text.startswith("["):
        host, port = parse_hostport(text)
        return host, port
    return text, None


def _qtype(word: str) -> int | None:
    upper = word.upper()
    if upper in ("A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "ANY", "CAA", "DS", "HTTPS"):
        return int(getattr(QTYPE, upper))
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return int(upper[4:])
    return None


def _option(args: DigArgs, option: str) -> None:
    key, _, value = option.partition("=")
    flag = not key.startswith("no")
    key = key.removeprefix("no")
    if key in ("tcp", "vc"):
        args.tcp = flag
    elif key in ("recurse", "rec"):
        args.recurse = flag
    elif key == "trace":
        args.trace = flag
    elif key == "short":
        args.short = flag
    elif key == "edns":
        args.edns = flag
    elif key in ("bufsize", "time", "tries") and value.isdigit():
        setattr(args, {"time": "wait"}.get(key, key), int(value))
    else:
        raise click.UsageError(f"unknown option +{option}")


@click.command(context_settings={"ignore_unknown_options": True})
@config_option
@click.argument(
    "words", nargs=-1, metavar="NAME [TYPE] [@SERVER[:PORT]] [+tcp] [+norecurse] [+trace] [+short]"
)
@click.option("-p", "--port", type=click.IntRange(1, 65535), help="The server's port [default: 53].")
@click.option("-x", "reverse", metavar="ADDR", help="Reverse lookup: the PTR name of ADDR.")
@click.option(
    "--root-hints",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Root hints for +trace [default: the running lab's, else the lab's shipped ones].",
)
def command(
    config_file: Path | None,
    words: tuple[str, ...],
    port: int | None,
    reverse: str | None,
    root_hints: Path | None,
) -> None:
    """Ask a DNS server a question and print the reply as dig does; +trace: iterate from the root."""
    args = parse_dig_args(words, reverse)
    if args.trace:
        config = load_config(config_file)
        _trace(args, port, root_hints, config)
        return
    server = (args.server or "127.0.0.1", args.server_port or port or 53)
    if not args.short:
        shown = " ".join(words)
        click.echo(f"\n; <<>> netlab dig {__version__} <<>> {shown}\n;; global options: +cmd")
    try:
        trio.run(_ask, args, server)
    except ExchangeError as exc:
        click.echo(f";; communications error: {exc}", err=True)
        raise SystemExit(9) from None


async def _ask(args: DigArgs, server: Addr) -> None:
    query = DNSRecord(q=DNSQuestion(args.name, args.qtype, args.qclass))
    query.header.id = random.SystemRandom().getrandbits(16)
    query.header.rd = int(args.recurse)
    if args.edns:
        query.add_ar(EDNS0(udp_len=args.bufsize))
    data = bytes(query.pack())
    started = time.monotonic()
    tcp = args.tcp
    if tcp:
        wire = await _over_tcp(data, server)
    else:
        wire = await exchange_udp(data, server, retry_after=args.wait, tries=args.tries)
        if wire[2] & 0x02:  # TC: the whole answer is only to be had over TCP (RFC 7766 section 5)
            if not args.short:
                click.echo(";; Truncated, retrying in TCP mode.")
            tcp = True
            wire = await _over_tcp(data, server)
    elapsed = time.monotonic() - started
    try:
        reply = parse_message_untrusted(wire)
    except RemoteProtocolError as exc:
        raise ExchangeError(f"malformed reply ({exc})") from None
    if args.short:
        for line in format_short(reply):
            click.echo(line)
        return
    for line in format_reply(reply):
        click.echo(line)
    now = datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y")
    click.echo(f";; Query time: {round(elapsed * 1000)} msec")
    click.echo(f";; SERVER: {server[0]}#{server[1]}({server[0]}) ({'TCP' if tcp else 'UDP'})")
    click.echo(f";; WHEN: {now}")
    click.echo(f";; MSG SIZE  rcvd: {len(wire)}\n")


async def _over_tcp(data: bytes, server: Addr) -> bytes:
    try:
        with trio.fail_after(TCP_TIMEOUT):
            return await exchange_tcp(data, server)
    except trio.TooSlowError:
        raise ExchangeError(f"no reply from {format_hostport(*server)} over TCP") from None


def _trace(args: DigArgs, port: int | None, root_hints: Path | None, config: NetlabConfig) -> None:
    """``+trace``: from the root hints, printing every step the way dig +trace does."""
    lab = running_lab(config)
    recorded = state_dir(config) / "root.hints"
    if root_hints is None:
        root_hints = recorded if lab is not None and recorded.exists() else root_hints_path()
    if port is None and lab is not None and root_hints == recorded:
        port = lab.port
    try:
        hints = parse_root_hints(root_hints.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{root_hints}: {exc}") from exc
    machine = Resolver.for_trace(
        hints, random.SystemRandom(), port=port or 53, deadline=max(1.0, args.wait * args.tries)
    )
    click.echo(f"\n; <<>> netlab dig {__version__} <<>> +trace {args.name} {QTYPE.get(args.qtype)}")
    click.echo(f";; root hints from {root_hints}, port {port or 53}\n")

    def on_step(event: Step | NoReply) -> None:
        server_name = to_text(event.server_name).rstrip(".") or "."
        if isinstance(event, NoReply):
            click.echo(f";; no reply from {event.server[0]}#{event.server[1]}({server_name})")
        elif event.depth == 0:
            if event.reply.header.tc and event.transport is Transport.UDP:
                click.echo(";; Truncated, retrying in TCP mode.")
                return
            for rr in (*event.reply.rr, *event.reply.auth):
                click.echo(format_rr(rr))
            click.echo(received_line(event.size, event.server, server_name, event.rtt) + "\n")
        else:
            asked = to_text(event.question[0])
            click.echo(f";; (looking up a name server's address: {asked} via {server_name})")

    answer = trio.run(partial(resolve_once, machine, name_of(args.name), args.qtype, on_step=on_step))
    if answer.rcode == Rcode.SERVFAIL:
        click.echo(f";; trace failed: {rcode_text(answer.rcode)}: no server gave a usable answer", err=True)
        raise SystemExit(9)
