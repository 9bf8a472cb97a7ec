"""``netlab dns resolver``: a caching recursive resolver for the machine it runs on.

Strategy: the suite's DNS server core (:mod:`netlab.aio.dns_server`: UDP and TCP, EDNS,
truncation, FORMERR) with a handler that decides who may ask, and then takes the answer from the
cache or waits for the iterative resolver (:mod:`netlab.aio.dns_iterate`, the machine of
:mod:`netlab.proto.dns_resolve`).  Answers carry RA and never AA: a resolver speaks for no zone.

Under ``netlab up --lab`` (or with ``--lab`` when run alone) it resolves against the offline lab:
the lab's root hints and its one port, read from the state the lab records when it starts.

Repeated questions are answered in the server core's receive loop from the reply kept the
first time, for about a second and never past a TTL (:mod:`netlab.aio.dns_fresh`); the access
check comes before that replay.  SIGHUP empties the cache and forgets what was learnt about the
servers, as a reload of unbound does.

Security defaults: it listens on loopback and answers only the networks in ``allow`` (loopback
unless configured); everyone else gets REFUSED, so it cannot become an open resolver that
amplifies attacks (RFC 5358).  Zone transfers are refused.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path

import click
import dnslib
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.dns_fresh import CheckedServer
from netlab.aio.dns_iterate import IterativeResolver
from netlab.aio.dns_server import DnsQuery, DnsServerSettings
from netlab.aio.dns_sockets import bind_dns
from netlab.aio.shutdown import Lifetime, Service, run_services, serve_until_stopping
from netlab.cli import config_option, load_config
from netlab.config import NetlabConfig, ResolverConfig
from netlab.lab import LabInfo, record_in_lab, running_lab, state_dir
from netlab.proto.dns_cache import DnsCache
from netlab.proto.dns_hints import RootHints, parse_root_hints
from netlab.proto.dns_resolve import Answer, Resolver, ResolverSettings
from netlab.proto.dns_wire import Rcode, make_reply, name_key

__all__ = ["ResolverHandler", "build_resolver", "command", "load_root_hints", "serve", "serve_lab", "service"]

log = logging.getLogger(__name__)

QTYPE = dnslib.QTYPE
CLASS_IN = 1
_REFUSED_TYPES = {QTYPE.AXFR, QTYPE.IXFR}  # a resolver holds no zones to transfer
REPLAY_ENTRIES = 10_000
MAX_ACL_MEMO = 4096  # client addresses whose access decision is remembered


#: Client questions waiting for the network are many and slow next to an authoritative server's.
_SERVER_SETTINGS = DnsServerSettings(
    udp_workers=512, udp_queue=2048, max_tcp_inflight=32, replay_cache=REPLAY_ENTRIES
)


def load_root_hints(path: str = "") -> RootHints:
    """Root hints from ``path``, or the real root servers shipped with netlab.

    Raises:
        click.ClickException: the file cannot be read or has no usable server.
    """
    try:
        if path:
            text = Path(path).read_text(encoding="utf-8")
        else:
            text = resources.files("netlab").joinpath("data/root.hints").read_text(encoding="utf-8")
        return parse_root_hints(text)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"root hints {path or '(built in)'}: {exc}") from exc


def build_resolver(cfg: ResolverConfig, hints: RootHints, *, rng: random.Random | None = None) -> Resolver:
    """The resolving machine configured by ``[resolver]``."""
    settings = ResolverSettings(
        upstream_port=cfg.upstream_port,
        qname_minimisation=cfg.qname_minimisation,
        deadline=cfg.deadline,
        max_upstream_queries=cfg.max_upstream_queries,
    )
    cache = DnsCache(cfg.cache_size, max_ttl=cfg.max_ttl, max_negative_ttl=cfg.max_negative_ttl)
    # IDs must be unpredictable to an attacker (RFC 5452 section 9.2).
    return Resolver(hints, rng or random.SystemRandom(), settings, cache)


class ResolverHandler:
    """Answers one client query: access control, then the cache or the iteration."""

    def __init__(self, resolver: IterativeResolver, allow: Sequence[str]) -> None:
        self.resolver = resolver
        self.allow = [ipaddress.ip_network(net, strict=False) for net in allow]
        self.refused = 0
        self._decided: dict[str, bool] = {}

    def allowed(self, host: str) -> bool:
        """Is ``host`` in an allowed network (decisions remembered: this runs for every query)."""
        known = self._decided.get(host)
        if known is None:
            if len(self._decided) >= MAX_ACL_MEMO:
                self._decided.clear()
            known = self._decided[host] = self._check(host)
        return known

    def _check(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow)

    async def __call__(self, query: DnsQuery) -> dnslib.DNSRecord:
        reply = make_reply(query.message)
        reply.header.ra = 1  # RFC 1035 section 4.1.1: recursion is available (to those allowed)
        question = query.question
        if not self.allowed(query.client[0]):
            self.refused += 1
            log.info("refused %s: not in the allowed networks", query.client[0])
            reply.header.rcode = Rcode.REFUSED
            return reply
        if question.qclass != CLASS_IN:
            reply.header.rcode = Rcode.NOTIMP
            return reply
        if question.qtype in _REFUSED_TYPES:
            reply.header.rcode = Rcode.REFUSED
            return reply
        key = name_key(question.qname)
        answer: Answer | None
        if query.message.header.rd:
            answer = await self.resolver.resolve(key, question.qtype)
        else:
            # RD clear (RFC 1034 section 4.3.1): answer from what we have, ask nobody.
            answer = self.resolver.machine.answer_from_cache(key, question.qtype, trio.current_time())
            if answer is None:
                answer = Answer(Rcode.REFUSED)
        reply.header.rcode = answer.rcode
        reply.rr = list(answer.answer)
        reply.auth = list(answer.authority)
        return reply


async def serve(
    cfg: ResolverConfig,
    hints: RootHints,
    lifetime: Lifetime,
    *,
    announce: Callable[[str], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bind, resolve for allowed clients until ``lifetime`` stops, then return.

    ``announce`` is told where the resolver answers (HOST:PORT) once it is bound.
    """
    endpoint, listener = await bind_dns(*parse_hostport(cfg.listen, default_port=53))
    listeners = [listener]
    resolver = IterativeResolver(build_resolver(cfg, hints))
    settings = replace(_SERVER_SETTINGS, query_log=cfg.query_log)
    handler = ResolverHandler(resolver, cfg.allow)
    server = CheckedServer(handler, handler.allowed, settings, clock=trio.current_time, name="resolver")
    where = format_hostport(*endpoint.local_address)
    if announce is not None:
        await announce(where)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(resolver.run)
            nursery.start_soon(_flush_on_hangup, resolver, server)
            nursery.start_soon(server.serve_udp, endpoint)
            nursery.start_soon(partial(server.serve_tcp, listeners))
            minimising = "on" if cfg.qname_minimisation else "off"
            task_status.started(
                [
                    f"DNS resolver on {where} (UDP and TCP), answering {', '.join(cfg.allow)}",
                    f"root hints: {len(hints.servers)} servers, upstream port {cfg.upstream_port}, "
                    f"QNAME minimisation {minimising}",
                ]
            )

    try:
        await serve_until_stopping(lifetime, run)
    finally:
        with trio.CancelScope(shield=True):
            await endpoint.aclose()
            for listener in listeners:
                await listener.aclose()


async def _flush_on_hangup(resolver: IterativeResolver, server: CheckedServer) -> None:
    """SIGHUP: start from nothing again (the cache, the servers' statistics, kept replies)."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            resolver.machine.flush()
            if server.fresh is not None:
                server.fresh.clear()
            log.info("SIGHUP: cache flushed")


async def serve_lab(
    cfg: ResolverConfig,
    lab_state: Path,
    lifetime: Lifetime,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve`, pointed at the lab recorded in ``lab_state`` (its root and its port).

    It records where it answers in the lab's record, for the lab's mail exchangers, the proxy
    and the mail relay that ``netlab up --lab`` starts after it.
    """
    try:
        info = await trio.to_thread.run_sync(LabInfo.load, lab_state)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"no running lab recorded in {lab_state} ({exc}): start it first") from exc
    hints = parse_root_hints(info.hints_text())

    async def announce(where: str) -> None:
        await trio.to_thread.run_sync(partial(record_in_lab, lab_state, resolver=where))

    await serve(
        replace(cfg, upstream_port=info.port), hints, lifetime, announce=announce, task_status=task_status
    )


def service(config: NetlabConfig) -> Service | None:
    """The resolver for ``netlab up`` (None when ``[resolver] enabled = false``).

    With the lab (``netlab up --lab``), which starts before it, it resolves against the lab.
    """
    cfg = config.resolver
    if not cfg.enabled:
        return None
    if config.lab.enabled:
        return Service("resolver", partial(serve_lab, cfg, state_dir(config)))
    return Service("resolver", partial(serve, cfg, load_root_hints(cfg.root_hints)))


@click.command("resolver")
@config_option
@click.option("--listen", help="ADDR:PORT to answer on (default 127.0.0.1:5353).")
@click.option(
    "--root-hints", type=click.Path(dir_okay=False), help="Root hints file (default: the real roots)."
)
@click.option(
    "--upstream-port", type=click.IntRange(1, 65535), help="Port the authoritative servers listen on."
)
@click.option(
    "--qname-minimisation/--no-qname-minimisation",
    default=None,
    help="Send each server only as much of the name as it needs (RFC 9156; default on).",
)
@click.option("--allow", multiple=True, help="Client network to answer (repeatable; default loopback only).")
@click.option(
    "--lab", is_flag=True, help="Resolve against the running lab (netlab lab up): its root and port."
)
def command(
    config_file: Path | None,
    listen: str | None,
    root_hints: str | None,
    upstream_port: int | None,
    qname_minimisation: bool | None,
    allow: tuple[str, ...],
    lab: bool,
) -> None:
    """Run the caching recursive resolver until Ctrl-C or SIGTERM."""
    overrides = {
        "listen": listen,
        "root_hints": root_hints,
        "upstream_port": upstream_port,
        "qname_minimisation": qname_minimisation,
        "allow": list(allow) if allow else None,
    }
    # With --lab the lab runs in another process: only the state it recorded is read here.
    config = load_config(config_file, {"resolver": overrides, "lab": {"enabled": True if lab else None}})
    try:
        for net in config.resolver.allow:
            ipaddress.ip_network(net, strict=False)
    except ValueError as exc:
        raise click.UsageError(f"--allow: {exc}") from exc
    if config.lab.enabled and running_lab(config) is None:
        raise click.ClickException("no running lab recorded: start it first (netlab lab up)")
    svc = service(config)
    if svc is None:
        raise click.UsageError("the resolver is disabled in the configuration ([resolver] enabled)")

    def on_started(service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(line)

    trio.run(partial(run_services, [svc], grace_period=config.general.grace_period, on_started=on_started))
