"""Running the real ``netlab`` command in tests: bounded waits, stop by PID."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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

    Reads the pipe's file descriptor directly: a buffered ``readline`` could swallow several
    lines at once and leave ``select`` waiting for data that has already arrived.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
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
