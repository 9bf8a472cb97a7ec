"""Detaching as a classic Unix daemon, and stopping one by its pidfile.

The sequence is the one Stevens gives (Advanced Programming in the UNIX Environment, 13.3):
fork so the parent can exit and the child is not a process-group leader; ``setsid`` to leave the
controlling terminal; fork again so the daemon can never reacquire one; ``chdir("/")`` so no
mount is held busy; a known ``umask``; standard input from /dev/null and standard output and error
to the log file.  It must happen before the trio event loop starts: forking a running loop
(threads, wakeup fds) is undefined.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["DaemonError", "daemonize", "read_pidfile", "stop_daemon"]


class DaemonError(RuntimeError):
    """The daemon cannot be started or stopped; the text says why."""


def read_pidfile(pidfile: Path) -> int | None:
    """The PID recorded in ``pidfile`` if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def daemonize(pidfile: Path, log_file: Path) -> Callable[[bool], None]:
    """Turn the calling process into a daemon; only the grandchild returns.

    Returns a ``notify(ok)`` callable: the original process waits, attached to the terminal, until
    the daemon calls it once its sockets are bound (exit status 0), reports failure, or dies
    (exit status 1).  So ``netlab up --daemon && netlab dig ...`` works without a sleep.

    Raises:
        DaemonError: a live daemon already holds ``pidfile``.
    """
    pidfile = pidfile.absolute()
    log_file = log_file.absolute()
    running = read_pidfile(pidfile)
    if running is not None:
        raise DaemonError(f"already running as PID {running} (pidfile {pidfile})")
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        # The original process: wait until the grandchild says how start-up went (or dies).
        os.close(ready_w)
        status = os.read(ready_r, 1)
        if status != b"1":
            sys.stderr.write(f"netlab: the daemon failed to start; see {log_file}\n")
        os._exit(0 if status == b"1" else 1)
    os.close(ready_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDONLY)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(pidfile)

    def notify(ok: bool) -> None:
        with contextlib.suppress(OSError):
            os.write(ready_w, b"1" if ok else b"0")
            os.close(ready_w)

    return notify


def stop_daemon(pidfile: Path, *, timeout: float = 30.0) -> int:
    """Send SIGTERM to the daemon of ``pidfile`` and wait for it to exit; returns its PID.

    Raises:
        DaemonError: no live daemon holds the pidfile, or it did not exit within ``timeout``.
    """
    pid = read_pidfile(pidfile)
    if pid is None:
        raise DaemonError(f"not running (no live process in {pidfile})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The daemon removes its pidfile as the last thing it does; a process that is gone (or a
        # zombie nobody has reaped yet) counts as stopped too.
        if not pidfile.exists() or not _alive(pid):
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
            return pid
        time.sleep(0.05)
    raise DaemonError(f"PID {pid} did not exit within {timeout:g} s of SIGTERM")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
