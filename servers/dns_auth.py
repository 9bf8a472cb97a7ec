"""``netlab dns serve``: an authoritative DNS server for standard master-file zones.

Strategy: the suite's DNS server core (:mod:`netlab.aio.dns_server`: UDP and TCP, EDNS,
truncation, FORMERR, idle timeouts, the query log) with the authoritative answer of
:mod:`netlab.proto.dns_auth` as its handler.  The zones are read once at start; their answers
depend on the question alone, so the core's reply cache is on: a repeated question is answered
from the encoded reply it got the first time.  ``--workers N`` starts N processes that share the
port through SO_REUSEPORT (the kernel spreads clients between them), for more than one core.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.dns_authoritative import AuthoritativeHandler, load_zone_files
from netlab.aio.dns_server import DnsServer, DnsServerSettings
from netlab.aio.dns_sockets import bind_dns
from netlab.aio.endpoint import Addr
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.cli import config_option, load_config
from netlab.config import DnsConfig, NetlabConfig
from netlab.proto.dns_auth import Authority
from netlab.proto.dns_zone import ZoneError

__all__ = ["command", "load_zones", "serve", "service"]

log = logging.getLogger(__name__)

REPLAY_CACHE = 20_000  # encoded replies kept per process


def load_zones(paths: Sequence[str | Path]) -> Authority:
    """The zones in the master files at ``paths``, ready to answer from.

    Raises:
        ZoneError: a file cannot be read or is not a servable zone, or two are for one zone.
    """
    return Authority(load_zone_files(paths))


def settings_from(config: DnsConfig) -> DnsServerSettings:
    return DnsServerSettings(
        udp_payload=config.udp_payload,
        tcp_idle_timeout=config.tcp_idle_timeout,
        max_tcp_connections=config.max_tcp_connections,
        replay_cache=REPLAY_CACHE,
        query_log=config.query_log,
    )


async def serve(
    config: DnsConfig,
    authority: Authority,
    lifetime: Lifetime,
    *,
    reuse_port: bool = False,
    on_bound: Callable[[Addr], None] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``authority`` on ``config.listen`` (UDP and TCP) until ``lifetime`` stops."""
    host, port = parse_hostport(config.listen, default_port=53)
    udp, listener = await bind_dns(host, port, reuse_port=reuse_port)
    if on_bound is not None:
        on_bound(udp.local_address)
    server = DnsServer(AuthoritativeHandler(authority), settings_from(config))
    where = format_hostport(host, udp.local_address[1])
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_udp, udp)
            await nursery.start(server.serve_tcp, [listener])
            zones = ", ".join(str(z.origin) for z in authority.zones.values()) or "none"
            task_status.started([f"authoritative DNS on {where} (UDP and TCP), zones: {zones}"])
            # DNS is stateless: stopping means no new queries; an answer cut off is asked again.
            await lifetime.stopping.wait()
            nursery.cancel_scope.cancel()
    finally:
        await udp.aclose()


def service(config: NetlabConfig) -> Service | None:
    """The authoritative server for ``netlab up``: only when it is enabled and has zones."""
    dns = config.dns
    if not dns.enabled or not dns.zones:
        return None
    try:
        authority = load_zones(dns.zones)
    except ZoneError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(dns, authority, lifetime, task_status=task_status)

    return Service("dns", run)


@click.command("serve")
@config_option
@click.option(
    "--listen", metavar="ADDR:PORT", help="Address and port for UDP and TCP [default: 127.0.0.1:5300]."
)
@click.option(
    "--zone",
    "zones",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A master file to serve (repeatable); its $ORIGIN, or else its name, names the zone.",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Processes sharing the port (SO_REUSEPORT).")
@click.option("--query-log/--no-query-log", default=None, help="One log line per query [default: on].")
@click.option("--reuse-port", is_flag=True, hidden=True, help="Bind with SO_REUSEPORT (set for workers).")
def command(
    config_file: Path | None,
    listen: str | None,
    zones: tuple[str, ...],
    workers: int | None,
    query_log: bool | None,
    reuse_port: bool,
) -> None:
    """Serve zones from master files as an authoritative DNS server, until Ctrl-C."""
    config = load_config(
        config_file,
        {"dns": {"listen": listen, "zones": zones or None, "workers": workers, "query_log": query_log}},
    )
    dns = config.dns
    if not dns.zones:
        raise click.UsageError("no zones: give --zone FILE (or [dns] zones in the configuration)")
    try:
        authority = load_zones(dns.zones)
    except ZoneError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        parse_hostport(dns.listen, default_port=53)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    helpers: list[subprocess.Popen[bytes]] = []

    def on_bound(address: Addr) -> None:
        if dns.workers > 1:
            helpers.extend(_start_workers(dns, address[1], config_file))

    async def run(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(
            dns,
            authority,
            lifetime,
            reuse_port=reuse_port or dns.workers > 1,
            on_bound=on_bound,
            task_status=task_status,
        )

    def on_started(_service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(line)
        sys.stdout.flush()

    try:
        trio.run(
            lambda: run_services(
                [Service("dns", run)], grace_period=config.general.grace_period, on_started=on_started
            )
        )
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.wait()


def _start_workers(dns: DnsConfig, port: int, config_file: Path | None) -> list[subprocess.Popen[bytes]]:
    """N-1 more processes on the port the first one bound (which may have been asked as 0)."""
    host, _ = parse_hostport(dns.listen, default_port=53)
    args = [sys.executable, "-m", "netlab", "dns", "serve", "--reuse-port", "--workers", "1"]
    args += [
        "--listen",
        format_hostport(host, port),
        "--no-query-log" if not dns.query_log else "--query-log",
    ]
    if config_file is not None:
        args += ["--config", str(config_file)]
    for zone in dns.zones:
        args += ["--zone", zone]
    log.info("starting %d more workers on port %d", dns.workers - 1, port)
    return [subprocess.Popen(args, stdout=subprocess.DEVNULL) for _ in range(dns.workers - 1)]
