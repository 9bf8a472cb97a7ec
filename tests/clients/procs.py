"""Running ``netlab`` commands as real processes in tests, always stopped by PID."""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NETLAB = [sys.executable, "-m", "netlab"]


def run_netlab(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one ``netlab`` command to completion."""
    return subprocess.run([*NETLAB, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def netlab_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """A ``netlab`` command running in the background; terminated and reaped on the way out."""
    proc = subprocess.Popen(
        [*NETLAB, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_pending: dict[int, bytes] = {}  # output read past the last line matched, by PID


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 20.0) -> re.Match[str]:
    """The first line of the process's stdout that matches ``pattern``, within ``timeout`` seconds.

    Reads the descriptor itself: a buffered ``readline`` could take several lines at once and
    leave ``select`` waiting for data that has already arrived.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = _pending.pop(proc.pid, b"")
    seen: list[str] = []
    while True:
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            seen.append(raw.decode(errors="replace"))
            if match := re.search(pattern, seen[-1]):
                _pending[proc.pid] = buffer
                return match
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    raise AssertionError(f"no line matching {pattern!r} in {seen!r} (exit status {proc.poll()})")


def free_udp_port() -> int:
    """A UDP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
