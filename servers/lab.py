"""``netlab lab up`` and ``netlab lab zones``, and the lab as a service of ``netlab up --lab``.

Strategy: the lab itself is :func:`netlab.lab.start_lab` (its name servers) and the web origin
of :mod:`netlab.lab.web`; this module runs them, prints where they are, and records them
(``lab.json`` and ``root.hints`` in the state directory) so that tools and servers started later,
in this process or another, can find their ports.

Under ``netlab up --lab`` every service is built from the configuration pointed at the lab
(:func:`point_at_lab`), when it starts: by then the lab, the resolver and the lab's mail
exchangers (:mod:`servers.lab_mail`), which start first, have recorded where they listen.  The
proxy then looks origins up through the suite's resolver, and the suite's mail relay asks that
resolver for MX records and delivers on the port the lab's mail exchangers got.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
import trio

import netlab.lab
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.cli import config_option, load_config
from netlab.config import LabConfig, NetlabConfig, override
from netlab.lab import LabInfo, running_lab, start_lab, zone_dir
from netlab.lab.ports import bind_same_port, listen_tcp
from netlab.lab.site import load_site
from netlab.lab.web import serve_origin

__all__ = ["describe_pointing", "point_at_lab", "pointed_at_lab", "service", "up_command", "zones_command"]

ServiceFactory = Callable[[NetlabConfig], Service | None]


def describe(info: LabInfo, state_dir: Path) -> list[str]:
    """Human-readable lines: each lab server, its address and what it is for."""
    lines = [f"lab on port {info.port}; root hints in {state_dir / 'root.hints'}"]
    for server in info.servers:
        zones = ", ".join(z.removesuffix(".zone") for z in server.zones) or "-"
        lines.append(f"  {server.address:<11} {server.name:<22} {zones:<14} {server.role}")
    origin = info.web_origin
    where = f"{origin.address}:{info.web_port}" if info.web_port is not None else "not running"
    lines.append(f"  web origin {info.web_url or origin.name} ({where})")
    for domain in info.mail_domains:
        hosts = ", ".join(f"{h.name} ({h.address})" for h in domain.mx)
        lines.append(f"  mail       {domain.domain} MX {hosts}")
    return lines


async def serve(
    lab: LabConfig, state_dir: Path, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    """Run the lab until ``lifetime`` stops, recording it in ``state_dir`` while it runs."""
    site = await trio.to_thread.run_sync(load_site)
    try:
        async with trio.open_nursery() as nursery:
            info: LabInfo = await nursery.start(partial(start_lab, port=lab.port, query_log=lab.query_log))
            address = info.web_origin.address
            web = (await bind_same_port([address], info.host_port(80), listen_tcp))[address]
            await nursery.start(serve_origin, site, [web.listener])
            info = dataclasses.replace(info, web_port=web.port)
            await trio.to_thread.run_sync(info.save, state_dir)
            task_status.started(describe(info, state_dir))
            await lifetime.stopping.wait()
            nursery.cancel_scope.cancel()
    finally:
        # Also when cut short (a second Ctrl-C): a record of a lab that is gone misleads.
        (state_dir / "lab.json").unlink(missing_ok=True)


def service(config: NetlabConfig) -> Service | None:
    """The lab for ``netlab up`` (``--lab``, or ``[lab] enabled = true``)."""
    if not config.lab.enabled:
        return None
    directory = netlab.lab.state_dir(config)

    async def run(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(config.lab, directory, lifetime, task_status=task_status)

    return Service("lab", run)


def point_at_lab(config: NetlabConfig, info: LabInfo | None) -> NetlabConfig:
    """``config`` with the proxy and the mail relay pointed at the lab ``info`` records.

    Both look names up through the suite's resolver (the one that resolves from the lab) and
    the relay delivers on the lab's mail port.  Without a running lab the resolver is taken
    from ``[resolver] listen`` and the relay port is left as configured.
    """
    if config.resolver.enabled:
        resolver = info.resolver if info is not None and info.resolver else config.resolver.listen
        config = override(config, "proxy", {"resolver": resolver})
        config = override(config, "smtp", {"resolver": resolver})
    if info is not None and info.mail_port is not None:
        config = override(config, "smtp", {"relay_port": info.mail_port})
    return config


def changed_settings(before: NetlabConfig, after: NetlabConfig, table: str) -> list[str]:
    """``key = value`` for each setting of ``table`` that differs between the two."""
    old, new = getattr(before, table, None), getattr(after, table, None)
    if old is None or new is None:
        return []
    return [
        f"{f.name} = {json.dumps(getattr(new, f.name))}"
        for f in dataclasses.fields(new)
        if getattr(old, f.name) != getattr(new, f.name)
    ]


def describe_pointing(config: NetlabConfig) -> tuple[NetlabConfig, list[str]]:
    """The configuration ``netlab up --lab`` gives its services now, and notes saying why."""
    directory = netlab.lab.state_dir(config)
    info = running_lab(config)
    pointed = point_at_lab(config, info)
    if info is None:
        notes = [
            f"no lab recorded in {directory}: the values the next `netlab up --lab` starts with;",
            "its relay_port becomes the lab mail exchangers' port (25, else the lab's own port)",
        ]
    else:
        notes = [f"pointed at the lab running on port {info.port} (recorded in {directory})"]
    for table in ("proxy", "smtp"):
        notes += [f"[{table}] {setting}" for setting in changed_settings(config, pointed, table)]
    return pointed, notes


def pointed_at_lab(factory: ServiceFactory) -> ServiceFactory:
    """``factory``, building its service when it starts from the configuration pointed at the lab.

    Services start one after another, so by then the lab and the services before this one have
    recorded where they listen.  The settings changed are added to the service's start-up lines.
    """

    def build(config: NetlabConfig) -> Service | None:
        planned = factory(config)
        if planned is None:
            return None

        async def run(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
            pointed = point_at_lab(config, await trio.to_thread.run_sync(running_lab, config))
            notes = changed_settings(config, pointed, planned.name)
            service = factory(pointed) if notes else planned
            assert service is not None  # pointing changes no "enabled" setting
            async with trio.open_nursery() as nursery:
                lines = await nursery.start(service.serve, lifetime)
                task_status.started([*lines, *(f"pointed at the lab: {note}" for note in notes)])

        return Service(planned.name, run)

    return build


@click.command("up")
@config_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="The port of every lab server; 0 takes a free one [default: 53, or a free one if not allowed].",
)
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="Where to record lab.json and root.hints."
)
@click.option("--query-log/--no-query-log", default=None, help="One log line per query [default: off].")
def up_command(
    config_file: Path | None, port: int | None, state_dir: str | None, query_log: bool | None
) -> None:
    """Run the offline lab Internet alone (name servers and web origin), until Ctrl-C."""
    config = load_config(
        config_file, {"lab": {"enabled": True, "port": port, "state_dir": state_dir, "query_log": query_log}}
    )
    lab_service = service(config)
    assert lab_service is not None

    def on_started(_service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(line)
        sys.stdout.flush()

    trio.run(
        lambda: run_services([lab_service], grace_period=config.general.grace_period, on_started=on_started)
    )


@click.command("zones")
@click.option("--files", is_flag=True, help="List each zone file instead of the directory.")
def zones_command(files: bool) -> None:
    """Print where the lab's zone files are (they ship inside the package)."""
    directory = zone_dir()
    if not files:
        click.echo(str(directory))
        return
    for path in sorted(directory.glob("*.zone")):
        click.echo(str(path))
