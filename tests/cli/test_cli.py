"""The ``netlab`` command: help everywhere, the configuration, and running the suite."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netlab.cli import main
from netlab.daemon import read_pidfile
from tests.processes import isolated_config, netlab, read_until, spawn, stop


def _walk(group: click.Group, ctx: click.Context, path: list[str]) -> list[list[str]]:
    found = [path]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join([*path, name])} cannot be loaded"
        if isinstance(cmd, click.Group):
            found += _walk(cmd, click.Context(cmd, parent=ctx, info_name=name), [*path, name])
        else:
            found.append([*path, name])
    return found


def _every_command() -> list[list[str]]:
    return _walk(main, click.Context(main, info_name="netlab"), [])


@pytest.mark.parametrize("path", _every_command(), ids=lambda p: " ".join(p) or "netlab")
def test_every_command_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_config_show_prints_effective_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[rdt]\nwindow = 7\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "window = 7" in result.output and "[general]" in result.output


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[rdt]\nwindow = 'x'\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(path)])
    assert result.exit_code == 2
    assert "rdt.window" in result.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_runs_in_the_foreground_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    proc = spawn("up", "--config", str(isolated_config(tmp_path)))
    try:
        lines = read_until(proc, "services up")
        assert all("0.0.0.0" not in line for line in lines)
    finally:
        status = stop(proc, sig)
    assert status == 0


@pytest.mark.timeout(60)
def test_daemon_detaches_and_down_stops_it(tmp_path: Path) -> None:
    pidfile, log_file = tmp_path / "netlab.pid", tmp_path / "netlab.log"
    config = isolated_config(tmp_path)
    started = netlab(
        "up",
        "--daemon",
        "--pidfile",
        str(pidfile),
        "--log-file",
        str(log_file),
        "--config",
        str(config),
        timeout=30,
    )
    assert started.returncode == 0, started.stderr
    pid = read_pidfile(pidfile)
    assert pid is not None
    try:
        # setsid ran (a session of its own) and the second fork left it no session leader, so it
        # can never acquire a controlling terminal; it does not hold the caller's directory busy.
        assert os.getsid(pid) != os.getsid(0)
        assert os.getsid(pid) != pid
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert "services up" in log_file.read_text()
        again = netlab("up", "--daemon", "--pidfile", str(pidfile), "--config", str(config), timeout=30)
        assert again.returncode != 0 and "already running" in again.stderr
        down = netlab("down", "--pidfile", str(pidfile), timeout=40)
        assert down.returncode == 0, down.stderr
        assert not pidfile.exists()
        assert "netlab: stopped" in log_file.read_text()
    finally:
        if read_pidfile(pidfile) is not None:
            os.kill(pid, signal.SIGKILL)


def test_down_without_daemon_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["down", "--pidfile", str(tmp_path / "none.pid")])
    assert result.exit_code == 1
    assert "not running" in result.output
