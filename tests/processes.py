"""Running netlab (and peers) as subprocesses in tests: started, read from, always stopped by PID.

``netlab`` runs a command to completion; ``running`` starts any command in the background for a
``with`` block, and ``spawn`` starts ``netlab`` in a session of its own for tests that signal it
themselves.  Every background process writes text to a stdout pipe, which one reader serves:
``read_line``, ``read_until`` and ``wait_for_line`` all read the descriptor itself, because a
buffered reader would take several lines at once and leave ``select`` waiting for data that has
already arrived.  What it reads past the line a test asked for is kept for the next call (and for
``communicate``), per process.  ``stop`` ends them all the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from netlab import config as configmod

ROOT = Path(__file__).resolve().parent.parent

Process: TypeAlias = subprocess.Popen[str] | subprocess.Popen[bytes]
#: Where a background process's stderr goes: a file, ``subprocess.PIPE``/``DEVNULL``, or None for ours.
Stderr: TypeAlias = Path | int | None


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


def free_udp_port() -> int:
    """A UDP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- starting ------------------------------------------------------------------------------------


def netlab_command(*args: str) -> list[str]:
    """The command line running ``netlab ARGS`` from this source tree."""
    return [sys.executable, "-m", "netlab", *args]


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The source tree on the path even for a daemon, which changes to "/" before it imports more.
    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


def netlab(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``netlab ARGS`` to completion, its output captured as text."""
    return subprocess.run(
        netlab_command(*args),
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _start(
    args: Sequence[str], stderr: Stderr, env: dict[str, str] | None = None, *, new_session: bool = False
) -> subprocess.Popen[str]:
    with contextlib.ExitStack() as files:
        err = files.enter_context(open(stderr, "w")) if isinstance(stderr, Path) else stderr
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=_environment(env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=new_session,
        )


@contextlib.contextmanager
def running(
    args: Sequence[str],
    *,
    stderr: Stderr = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    sig: int = signal.SIGTERM,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[str]]:
    """A process for the ``with`` block, stdout piped; ``stop(proc, sig, timeout)`` and its pipes
    closed after.

    stderr goes to a file, or nowhere; a pipe only for a process whose output the test collects
    with ``communicate``: an unread pipe fills up and stalls a server that logs every query.
    """
    proc = _start(args, stderr, env)
    with proc:  # closes the pipes on the way out
        try:
            yield proc
        finally:
            stop(proc, sig, timeout)


def spawn(*args: str, stderr: Stderr = None) -> subprocess.Popen[str]:
    """``netlab ARGS`` in a session of its own, stdout piped; the caller stops it (``stop``)."""
    return _start(netlab_command(*args), stderr, new_session=True)


# -- reading -------------------------------------------------------------------------------------

_unread: weakref.WeakKeyDictionary[Process, bytes] = weakref.WeakKeyDictionary()


def _read_lines(proc: Process, done: Callable[[str], bool], timeout: float, wanted: str) -> list[str]:
    """The lines ``proc`` prints up to and including the first that ``done`` accepts."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = _unread.pop(proc, b"")
    lines: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                lines.append(raw.decode(errors="replace"))
                if done(lines[-1]):
                    _unread[proc] = buffer
                    return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                why = f"nothing more within {timeout} s"
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                why = f"stdout closed (exit status {proc.poll()})"
                break
            buffer += chunk
    raise AssertionError(f"no {wanted}: {why}; got {lines!r} and then {buffer!r}")


def read_line(proc: Process, timeout: float = 30.0) -> str:
    """The next line ``proc`` prints; fails if none comes within ``timeout`` seconds."""
    return _read_lines(proc, lambda _: True, timeout, "line")[-1]


def read_until(proc: Process, marker: str, timeout: float = 30.0) -> list[str]:
    """The lines ``proc`` prints up to and including the first one containing ``marker``."""
    return _read_lines(proc, lambda line: marker in line, timeout, f"line containing {marker!r}")


def wait_for_line(proc: Process, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    """The match of ``pattern`` in the first line ``proc`` prints that it matches."""
    line = _read_lines(
        proc, lambda line: re.search(pattern, line) is not None, timeout, f"line matching {pattern!r}"
    )
    match = re.search(pattern, line[-1])
    assert match is not None
    return match


def communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """The rest of the output, (stdout, stderr), once ``proc`` exits within ``timeout`` seconds.

    stdout starts with whatever the line reader read past its last line, which
    ``Popen.communicate`` alone would lose; stderr is "" unless it was a pipe.
    """
    out, err = proc.communicate(timeout=timeout)
    return _unread.pop(proc, b"").decode(errors="replace") + (out or ""), err or ""


# -- stopping ------------------------------------------------------------------------------------


def stop(proc: Process, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send ``sig`` to ``proc`` by its PID and reap it; returns the exit status.

    If it lingers past ``timeout`` it gets SIGKILL, and so does the rest of its process group
    when it leads one (a session of its own), so nothing it started outlives the test.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile: wait() reaps it
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
    return proc.wait()
