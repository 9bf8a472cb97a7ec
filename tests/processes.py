"""Running netlab (and peers) as subprocesses in tests: started, read from, always stopped by PID."""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netlab import config as configmod

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "isolated_config", "netlab", "read_line", "running", "stop"]


def isolated_config(tmp_path: Path, **tables: dict[str, Any]) -> Path:
    """A configuration file keeping every service on free loopback ports and its data under
    ``tmp_path``, with ``tables`` (``lab={"port": 0}``...) set on top; returns its path."""
    config = configmod.override(configmod.NetlabConfig(), "general", {"data_dir": str(tmp_path / "data")})
    for table in dataclasses.fields(config):
        if hasattr(getattr(config, table.name), "listen"):
            config = configmod.override(config, table.name, {"listen": "127.0.0.1:0"})
    for name, values in tables.items():
        config = configmod.override(config, name, values)
    path = tmp_path / "netlab.toml"
    path.write_text(configmod.render_toml(config))
    return path


def netlab(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m netlab ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "netlab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


_pending: dict[int, bytes] = {}  # output read past the last line returned, by PID


def read_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """The next line the process writes to stdout; fails if none comes within ``timeout``.

    Reads the descriptor itself: a buffered reader would swallow several lines at once and leave
    select() waiting for data that has already arrived.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = _pending.pop(proc.pid, b"")
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(timeout=remaining):
                raise AssertionError(f"no line within {timeout} s (got {buffer!r})")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"process exited ({proc.poll()}) before writing a line")
            buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    _pending[proc.pid] = rest
    return line.decode()


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it lingers; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


@contextmanager
def running(
    args: Sequence[str], *, stderr: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process, stdout readable as text lines, stderr to a file (or nowhere), stopped on exit.

    (stderr is never a pipe: an unread pipe fills up and stalls a server that logs every query.)
    """
    with open(stderr or os.devnull, "w") as err:
        proc = subprocess.Popen(
            list(args),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
        try:
            yield proc
        finally:
            stop(proc)
            _pending.pop(proc.pid, None)
            if proc.stdout is not None:
                proc.stdout.close()
