"""``netlab smtpd``: the SMTP server and its relay over the shared mail store.

Strategy: :func:`serve` opens the store, makes (or loads) the STARTTLS certificate, starts the
relay task and accepts connections, one task each (:mod:`servers.smtp_session`).  When the
lifetime starts stopping it stops accepting, tells idle sessions to leave (421), lets sessions
that are receiving a message finish, and then stops the relay; queued mail waits durably for the
next start.  Tests pass in-memory listeners, a mail system with a virtual clock, a scripted
resolver and a fake ``connect``.

One process keeps one core busy.  With ``workers = N`` (N > 1) this process binds the listening
sockets, runs the relay and supervises N worker processes (:mod:`servers.smtp_worker`,
:mod:`netlab.aio.workers`) that inherit the sockets and serve every connection, each over the
same store: Maildir delivery is safe across processes (unique names carry the PID), any process
may add to the outbound queue, and only this one delivers from it.  A worker that queued mail for
another domain reports it, which wakes the relay here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.dns_stub import StubResolver
from netlab.aio.shutdown import Lifetime, Service, run_services, serve_connections
from netlab.aio.tls import client_context, ensure_self_signed, server_context
from netlab.aio.workers import WorkerPool
from netlab.cli import config_option, load_config
from netlab.config import ConfigError, NetlabConfig, SmtpConfig, data_path, override, render_toml
from servers.mail_system import MailSystem
from servers.relay import Connect, MxResolver, Relay
from servers.smtp_session import SmtpServerContext, handle_connection

__all__ = [
    "QUEUED",
    "command",
    "listener_lines",
    "serve",
    "serve_sessions",
    "service",
    "smtp_context",
    "tls_context",
]

log = logging.getLogger(__name__)

#: A worker's report that it queued mail for the relay.
QUEUED = "queued"
_CAN_PIN = hasattr(os, "sched_setaffinity")  # Linux; elsewhere pin_workers does nothing


def tls_context(cert: str, key: str, store: Path, hostname: str) -> ssl.SSLContext:
    """The server context from the configured pair, or the store's self-signed one (blocking)."""
    if cert and key:
        return server_context(Path(cert).expanduser(), Path(key).expanduser())
    if cert or key:
        raise ConfigError("tls_cert and tls_key go together")
    return server_context(*ensure_self_signed(store / "tls", hostname))


def listener_lines(scheme: str, listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]) -> list[str]:
    out = []
    for listener in listeners:
        sock = getattr(listener, "socket", None)
        if sock is not None:
            host, port = sock.getsockname()[:2]
            out.append(f"{scheme}://{format_hostport(host, port)}")
    return out or [f"{scheme} (in-memory listeners)"]


async def smtp_context(config: NetlabConfig, mail: MailSystem | None = None) -> SmtpServerContext:
    """What every session of this process shares: the store, the certificate, the policy."""
    cfg = config.smtp
    hostname = cfg.hostname or socket.gethostname()
    mail = mail or MailSystem(data_path(config, cfg.store, "mail"), cfg.domains)
    ssl_ctx = await trio.to_thread.run_sync(tls_context, cfg.tls_cert, cfg.tls_key, mail.root, hostname)
    return SmtpServerContext(
        config=cfg,
        hostname=hostname,
        mail=mail,
        ssl_context=ssl_ctx,
        trusted=tuple(ipaddress.ip_network(n, strict=False) for n in cfg.trusted_networks),
    )


async def serve(
    config: NetlabConfig,
    lifetime: Lifetime,
    *,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None = None,
    mail: MailSystem | None = None,
    resolver: MxResolver | None = None,
    connect: Connect | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the SMTP server and the relay until ``lifetime.stopping``, then drain."""
    cfg = config.smtp
    if cfg.workers < 1:
        raise ConfigError(f"smtp.workers: at least 1 process serves connections, not {cfg.workers}")
    ctx = await smtp_context(config, mail)
    relay = Relay(
        ctx.mail,
        cfg,
        ctx.hostname,
        resolver=resolver or StubResolver(parse_hostport(cfg.resolver, default_port=53)),
        connect=connect or trio.open_tcp_stream,
        ssl_context=client_context(verify=cfg.relay_tls_verify),
    )
    if listeners is None:
        host, port = parse_hostport(cfg.listen, default_port=2525)
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    lines = listener_lines("smtp", listeners)
    lines[0] += f" for {', '.join(cfg.domains) or 'no local domains'} (store {ctx.mail.root})"
    async with trio.open_nursery() as background:
        await background.start(relay.run)
        if cfg.workers > 1:
            await _run_workers(config, ctx.mail, listeners, lifetime, lines, task_status)
        else:
            await serve_sessions(ctx, listeners, lifetime, started=partial(task_status.started, lines))
        background.cancel_scope.cancel()
    log.info("smtp: stopped (%s)", dict(ctx.stats))


async def serve_sessions(
    ctx: SmtpServerContext,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    lifetime: Lifetime,
    *,
    started: Callable[[], None],
) -> None:
    """Accept and serve SMTP connections until ``lifetime`` stops, then drain them."""
    await serve_connections(
        partial(handle_connection, ctx=ctx), listeners, lifetime, started=started, closing=ctx.waits.shut_down
    )


async def _run_workers(
    config: NetlabConfig,
    mail: MailSystem,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    lifetime: Lifetime,
    lines: list[str],
    task_status: trio.TaskStatus[list[str]],
) -> None:
    """Serve through ``smtp.workers`` worker processes until ``lifetime`` stops and they have drained."""
    sockets = [getattr(listener, "socket", None) for listener in listeners]
    if any(sock is None for sock in sockets):
        raise ConfigError("smtp.workers > 1 needs socket listeners for the workers to inherit")

    def on_report(line: str) -> None:
        if line == QUEUED:
            mail.queued.set()  # a worker queued mail: the relay here delivers it

    # The workers log at this process's level, wherever it came from (file or --log-level).
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    pool = WorkerPool(
        "smtp",
        # Imported, not run as __main__, so that its log records carry the module's name.
        [sys.executable, "-c", "from servers.smtp_worker import main; main()"],
        config.smtp.workers,
        fds=[sock.fileno() for sock in sockets if sock is not None],
        setup=render_toml(override(config, "general", {"log_level": level})).encode(),
        on_report=on_report,
        env={"PYTHONPATH": _import_path()},
        cpus=sorted(os.sched_getaffinity(0)) if config.smtp.pin_workers and _CAN_PIN else (),
    )
    async with trio.open_nursery() as nursery:
        pids = await nursery.start(pool.run, lifetime)
        pid_list = ", ".join(map(str, pids))
        task_status.started([*lines, f"served by {len(pids)} worker processes (pids {pid_list})"])


def _import_path() -> str:
    """PYTHONPATH for a worker: this checkout (or installation) first, so it runs the same code."""
    here = str(Path(__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH")
    return f"{here}{os.pathsep}{inherited}" if inherited else here


def service(config: NetlabConfig) -> Service | None:
    """The SMTP server for ``netlab up``; None when ``[smtp] enabled = false``."""
    if not config.smtp.enabled:
        return None
    return Service("smtp", partial(serve, config))


@click.command("smtpd")
@config_option
@click.option("--listen", help=f"HOST:PORT to accept SMTP on [{SmtpConfig.listen}].")
@click.option("--store", help="The mail store directory [<data_dir>/mail].")
@click.option("--domain", "domains", multiple=True, help="A local domain (repeatable) [example.test].")
@click.option("--hostname", help="Our name in the greeting and Received: headers [host name].")
@click.option("--max-message-size", type=int, help="The SIZE limit in octets.")
@click.option("--trusted-network", "trusted", multiple=True, help="CIDR allowed to relay without AUTH.")
@click.option("--resolver", help="The DNS resolver the relay asks for MX records (HOST:PORT).")
@click.option("--relay-port", type=int, help="The port of other domains' mail servers [25].")
@click.option(
    "--workers", type=click.IntRange(1, 64), help="Processes serving connections (more use more cores) [1]."
)
@click.option(
    "--pin-workers/--no-pin-workers", default=None, help="Pin each worker process to a CPU of its own [no]."
)
def command(
    config_file: Path | None,
    listen: str | None,
    store: str | None,
    domains: tuple[str, ...],
    hostname: str | None,
    max_message_size: int | None,
    trusted: tuple[str, ...],
    resolver: str | None,
    relay_port: int | None,
    workers: int | None,
    pin_workers: bool | None,
) -> None:
    """Run the SMTP server (local delivery to Maildirs, relaying over MX) until Ctrl-C."""
    config = load_config(
        config_file,
        {
            "smtp": {
                "listen": listen,
                "store": store,
                "domains": domains or None,
                "hostname": hostname,
                "max_message_size": max_message_size,
                "trusted_networks": trusted or None,
                "resolver": resolver,
                "relay_port": relay_port,
                "workers": workers,
                "pin_workers": pin_workers,
                "enabled": True,
            }
        },
    )
    run_alone(config, Service("smtp", partial(serve, config)))


def run_alone(config: NetlabConfig, svc: Service) -> None:
    """Run one service in the foreground the way ``netlab up`` runs them all."""

    def on_started(_service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(f"{svc.name}: {line}")

    try:
        trio.run(lambda: run_services([svc], grace_period=config.general.grace_period, on_started=on_started))
    except* (OSError, ConfigError) as failed:
        # Raised inside the service's nurseries, they arrive wrapped in exception groups.
        raise click.ClickException("; ".join(map(str, _leaves(failed)))) from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
