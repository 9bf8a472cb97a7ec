"""``netlab lab up`` and ``netlab lab zones``, and the lab as a service of ``netlab up --lab``.

Strategy: the lab itself is :func:`netlab.lab.start_lab`; this module runs it, prints where it
is, and records it (``lab.json`` and ``root.hints`` in the state directory) so that tools and
servers started later, in this process or another, can find its port.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import click
import trio

import netlab.lab
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.cli import config_option, load_config
from netlab.config import LabConfig, NetlabConfig
from netlab.lab import LabInfo, start_lab, zone_dir

__all__ = ["service", "up_command", "zones_command"]


def describe(info: LabInfo, state_dir: Path) -> list[str]:
    """Human-readable lines: each lab server, its address and what it is for."""
    lines = [f"lab on port {info.port}; root hints in {state_dir / 'root.hints'}"]
    for server in info.servers:
        zones = ", ".join(z.removesuffix(".zone") for z in server.zones) or "-"
        lines.append(f"  {server.address:<11} {server.name:<22} {zones:<14} {server.role}")
    lines.append(f"  web origin {info.web_origin.name} -> {info.web_origin.address}")
    for domain in info.mail_domains:
        hosts = ", ".join(f"{h.name} ({h.address})" for h in domain.mx)
        lines.append(f"  mail       {domain.domain} MX {hosts}")
    return lines


async def serve(
    lab: LabConfig, state_dir: Path, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    """Run the lab until ``lifetime`` stops, recording it in ``state_dir`` while it runs."""
    async with trio.open_nursery() as nursery:
        info: LabInfo = await nursery.start(partial(start_lab, port=lab.port, query_log=lab.query_log))
        await trio.to_thread.run_sync(info.save, state_dir)
        task_status.started(describe(info, state_dir))
        await lifetime.stopping.wait()
        nursery.cancel_scope.cancel()
    (state_dir / "lab.json").unlink(missing_ok=True)


def service(config: NetlabConfig) -> Service | None:
    """The lab for ``netlab up`` (``--lab``, or ``[lab] enabled = true``)."""
    if not config.lab.enabled:
        return None
    directory = netlab.lab.state_dir(config)

    async def run(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(config.lab, directory, lifetime, task_status=task_status)

    return Service("lab", run)


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
    """Run the offline lab Internet alone, until Ctrl-C."""
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
