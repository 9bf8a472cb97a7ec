"""The ``netlab`` command.

This module is the composition root: it knows which servers and clients exist and loads each
one's click command only when it is used (``LazyGroup``), so ``netlab --help`` stays fast and a
server's dependencies are imported by that server alone.  Every server module offers a
``command`` (running it alone) and a ``service(config)`` factory (running it under ``netlab up``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import click
import trio

from netlab import __version__
from netlab import config as configmod
from netlab.aio.shutdown import Service, run_services
from netlab.log import setup_logging

__all__ = ["LazyGroup", "config_option", "load_config", "log_level", "main"]

#: Services ``netlab up`` starts, in order: "module:factory", each ``factory(config)`` returning
#: a :class:`Service` or None when the service is disabled in the configuration.
SERVICES: Sequence[str] = (
    "servers.lab:service",  # first, so that the servers after it can be pointed at the lab
    "servers.dns_auth:service",
    "servers.dns_resolver:service",
    "servers.lab_mail:service",  # after the resolver, before the relay that delivers to it
    "servers.rdt:service",
    "servers.tftp:service",
    "servers.proxy:service",
    "servers.smtp:service",
    "servers.pop3:service",
)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use ("module:attribute")."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            return _import(self.lazy[cmd_name])  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` for any command that reads the configuration."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="NETLAB_CONFIG",
        help="TOML configuration file, a table per service (default: $NETLAB_CONFIG).",
    )(f)


def load_config(
    config_file: Path | None, overrides: dict[str, dict[str, Any]] | None = None
) -> configmod.NetlabConfig:
    """The configuration file with command-line ``overrides`` on top; a usage error if bad."""
    try:
        config = configmod.load(config_file)
        for table, values in (overrides or {}).items():
            config = configmod.override(config, table, values)
    except configmod.ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    level = log_level(config)
    if level is not None:
        try:
            setup_logging(level)
        except ValueError as exc:
            raise click.UsageError(f"general.log_level: {exc}") from exc
    return config


def log_level(config: configmod.NetlabConfig) -> str | None:
    """The level a ``netlab`` command logs at: ``--log-level`` if given, else the configuration's.

    None outside a ``netlab`` command line (a library caller keeps its own logging).
    """
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is None or root.command is not main:
        return None
    if root.get_parameter_source("log_level") is click.core.ParameterSource.DEFAULT:
        return config.general.log_level
    return str(root.params["log_level"])


@click.group(
    cls=LazyGroup,
    lazy={
        "dig": "clients.dig:command",
        "link": "clients.link:command",
        "proxy": "servers.proxy:command",
        "smtpd": "servers.smtp:command",
        "pop3d": "servers.pop3:command",
        "mail": "clients.mail:command",
        "tftp": "clients.tftp:command",
        "tftpd": "servers.tftp:command",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="netlab")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    help="Diagnostics written to stderr [general.log_level in the configuration, else INFO].",
)
def main(log_level: str) -> None:
    """netlab: real network protocol servers and clients on loopback."""
    setup_logging(log_level)


@main.group(
    cls=LazyGroup,
    lazy={"serve": "servers.dns_auth:command", "resolver": "servers.dns_resolver:command"},
)
def dns() -> None:
    """DNS servers: the authoritative server and the caching recursive resolver."""


@main.group(cls=LazyGroup, lazy={"up": "servers.lab:up_command", "zones": "servers.lab:zones_command"})
def lab() -> None:
    """The offline lab Internet: DNS root, TLD and authoritative servers, a web origin, on 127.0.0.x."""


@main.group(cls=LazyGroup, lazy={"send": "clients.rdt:command", "recv": "servers.rdt:command"})
def rdt() -> None:
    """Reliable transport over UDP (Go-Back-N, Selective Repeat, stop-and-wait)."""


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@config_option
@click.option("--lab", is_flag=True, help="As `netlab up --lab` runs it: pointed at the (running) lab.")
def config_show(config_file: Path | None, lab: bool) -> None:
    """Print the effective configuration (defaults, then the file) as TOML."""
    config = load_config(config_file, {"lab": {"enabled": True if lab else None}})
    if config.lab.enabled:
        from servers.lab import describe_pointing

        config, notes = describe_pointing(config)
        click.echo("".join(f"# {note}\n" for note in notes), nl=False)
    click.echo(configmod.render_toml(config), nl=False)


def _no_daemon(ok: bool) -> None:
    """Start-up needs reporting only to the parent of a daemon."""


@main.command()
@config_option
@click.option("--daemon", is_flag=True, help="Detach and run in the background (needs --pidfile).")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), help="PID file (with --daemon).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where a daemon writes its logs (default: next to the pidfile).",
)
@click.option(
    "--lab",
    is_flag=True,
    help="Also run the offline lab Internet (DNS, a web origin, two mail domains on 127.0.0.x) "
    "and point the resolver, proxy and mail relay at it.",
)
def up(
    config_file: Path | None, daemon: bool, pidfile: Path | None, log_file: Path | None, lab: bool
) -> None:
    """Run every server of the suite on loopback until Ctrl-C or SIGTERM."""
    config = load_config(config_file, {"lab": {"enabled": True if lab else None}})
    factories = [_import(t) for t in SERVICES]
    if config.lab.enabled:
        from servers.lab import pointed_at_lab

        factories = [pointed_at_lab(f) for f in factories]
    services = [s for s in (f(config) for f in factories) if s is not None]
    notify: Callable[[bool], None] = _no_daemon
    if daemon:
        from netlab.daemon import DaemonError, daemonize

        if pidfile is None:
            raise click.UsageError("--daemon needs --pidfile FILE")
        try:
            notify = daemonize(pidfile, log_file or pidfile.with_suffix(".log"))
        except DaemonError as exc:
            raise click.ClickException(str(exc)) from exc
        setup_logging(log_level(config) or config.general.log_level)

    def on_started(service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(f"{service.name:<8} {line}")

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            lifetime = await nursery.start(
                partial(
                    run_services,
                    services,
                    grace_period=config.general.grace_period,
                    on_started=on_started,
                )
            )
            if not lifetime.stopping.is_set():  # not stopped while it was starting
                click.echo(f"netlab: {len(services)} services up; Ctrl-C or SIGTERM stops them")
                sys.stdout.flush()
            notify(True)

    try:
        trio.run(run)
    except BaseException:
        notify(False)
        raise
    finally:
        if daemon and pidfile is not None:
            pidfile.unlink(missing_ok=True)
    click.echo("netlab: stopped")


@main.command()
@click.option(
    "--pidfile", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The daemon's PID file."
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for it to exit.")
def down(pidfile: Path, timeout: float) -> None:
    """Stop a daemon started with ``netlab up --daemon``."""
    from netlab.daemon import DaemonError, stop_daemon

    try:
        pid = stop_daemon(pidfile, timeout=timeout)
    except DaemonError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"netlab: stopped PID {pid}")
