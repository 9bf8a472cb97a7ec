"""Running the real ``netlab`` command in tests: isolated configuration, bounded waits, stop by PID."""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from netlab import config as configmod

ROOT = Path(__file__).resolve().parents[2]


def isolated_config(tmp_path: Path) -> Path:
    """A configuration file that keeps every service on free loopback ports and under tmp_path."""
    config = configmod.override(configmod.NetlabConfig(), "general", {"data_dir": str(tmp_path / "data")})
    for table in dataclasses.fields(config):
        if hasattr(getattr(config, table.name), "listen"):
            config = configmod.override(config, table.name, {"listen": "127.0.0.1:0"})
    path = tmp_path / "netlab.toml"
    path.write_text(configmod.render_toml(config))
    return path


def netlab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "netlab", *args]


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start ``netlab ARGS`` from the source tree with stdout piped (stderr to ours)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        netlab_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30.0) -> list[str]:
    """Lines printed by ``proc`` up to and including the first one containing ``marker``.

    The pipe is read as raw octets: a buffered ``readline`` could take several lines at once and
    leave ``select`` waiting for data that has already been read.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                lines.append(raw.decode(errors="replace"))
                if marker in lines[-1]:
                    return lines
    raise AssertionError(f"{marker!r} never printed; got {lines}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Signal ``proc`` by PID and reap it; kills the process group if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
