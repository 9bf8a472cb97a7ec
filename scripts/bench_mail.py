"""Benchmark netlab's mail servers side by side with aiosmtpd (SMTP) and Dovecot (POP3).

SMTP: postfix's ``smtp-source -s 20 -m 2000 -l 4096`` (20 parallel sessions, 2000 messages of
4 KiB, one connection each) against ``netlab smtpd`` (in one process, and with ``--workers N``)
and against aiosmtpd with its Maildir handler, each storing into a fresh Maildir on the same
disk; messages per second, median of the rounds, and the CPU time of the server's processes.
netlab fsyncs each message file and the ``new/`` directory before its 250; aiosmtpd's
``mailbox.Maildir`` fsyncs the file.

POP3: poplib logs in and RETRs 500 messages of the same Maildir from ``netlab pop3d`` and from
Dovecot (dovecot-pop3d) in turn; seconds, median of the rounds.  Both check the same argon2id
password hash (Dovecot reads it from a passwd-file written from netlab's users file).

Writes docs/bench/mail.csv and docs/bench/mail.md.  Needs root for Dovecot (it runs the mail
process as the ``mail`` user, which is given the Maildir for the run).
"""

from __future__ import annotations

import argparse
import os
import poplib
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_mail_report import UNITS, write_results

ROOT = Path(__file__).resolve().parent.parent
USER = "alice@example.test"
PASSWORD = "bench password"
AIOSMTPD = """
import sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
controller = Controller(Mailbox(sys.argv[1]), hostname="127.0.0.1", port=int(sys.argv[2]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> None:
    """Wait for the server to print ``pattern``, or (with a "port:N" pattern) to accept on N."""
    if pattern.startswith("port:"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", int(pattern[5:])), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start listening on {pattern[5:]}")
    assert proc.stdout is not None
    # Read the descriptor itself: a buffered reader may take several lines at once and leave
    # select() waiting for one it already holds.
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        seen += chunk
        if any(re.search(pattern, line) for line in seen.decode(errors="replace").splitlines()):
            return
    raise RuntimeError(f"server did not start (waiting for {pattern!r})")


@contextmanager
def process(
    args: list[str], ready: str, log: Path, *, stdin: bool = False
) -> Iterator[subprocess.Popen[str]]:
    with open(log, "a") as errors:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        wait_for_line(proc, ready)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make_store(store: Path) -> None:
    """A netlab store with the bench user (default argon2 parameters, as in production)."""
    from netlab.store.maildir import MailStore
    from netlab.store.users import UserDb

    MailStore(store).create()
    UserDb(store / "users").set_password(USER, PASSWORD, create=True)


def netlab_config(path: Path, store: Path, smtp_port: int, pop3_port: int) -> Path:
    path.write_text(
        f'[general]\nlog_level = "WARNING"\ngrace_period = 2.0\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\nstore = "{store}"\ndomains = ["example.test"]\n'
        f'[pop3]\nlisten = "127.0.0.1:{pop3_port}"\nstore = "{store}"\nauth_requires_tls = false\n'
    )
    return path


def count_files(maildir: Path) -> int:
    return sum(1 for d in ("new", "cur") if (maildir / d).exists() for _ in (maildir / d).iterdir())


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process and its children (all their threads) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for each in [pid, *children(pid)]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
    return user, system


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def wait_until_quiet(limit: float = 0.1, patience: float = 60.0) -> None:
    """Wait (up to ``patience`` seconds) until the machine's CPUs are less than ``limit`` busy."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        before = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        time.sleep(0.5)
        after = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total, idle = sum(after) - sum(before), after[3] + after[4] - before[3] - before[4]
        if total and 1 - idle / total < limit:
            return


def smtp_source(port: int, messages: int, sessions: int, size: int) -> float:
    """Seconds smtp-source takes to hand over every message."""
    tool = shutil.which("smtp-source", path="/usr/sbin:/usr/bin")
    if tool is None:
        raise SystemExit("smtp-source not found (Debian package postfix)")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [tool, "-s", str(sessions), "-m", str(messages), "-l", str(size), "-f", "bench@far.test", "-t", USER,
         f"127.0.0.1:{port}"]
    )  # fmt: skip
    # A plain wait() returns the moment the tool exits; wait(timeout=...) polls, in sleeps of up to
    # 50 ms, which would round every measurement up by as much.  The timer only guards a hang.
    guard = threading.Timer(600, proc.kill)
    guard.start()
    try:
        status = proc.wait()
    finally:
        guard.cancel()
    elapsed = time.perf_counter() - start
    if status != 0:
        raise subprocess.CalledProcessError(status, proc.args)
    return elapsed


Result = tuple[float, float, float]  # msg/s, CPU ms per message, of which kernel


def bench_smtp_netlab(work: Path, n: int, args: argparse.Namespace, workers: int) -> Result:
    """Messages per second, and the server's CPU milliseconds per message (total, kernel)."""
    store = work / f"netlab-smtp-{n}-{workers}"
    make_store(store)
    port = free_port()
    cfg = netlab_config(work / "netlab-smtp.toml", store, port, free_port())
    cmd = [sys.executable, "-m", "netlab", "smtpd", "--config", str(cfg), "--workers", str(workers)]
    if workers > 1:
        cmd.append("--pin-workers")  # one CPU each: the machine is theirs for the run
    ready = r"smtp://" if workers == 1 else r"served by \d+ worker"
    result = run_smtp_source(cmd, ready, work / "netlab.log", port, args)
    delivered = count_files(store / "mailboxes" / "example.test" / "alice")
    assert delivered == args.messages, f"netlab stored {delivered} of {args.messages}"
    return result


def bench_smtp_aiosmtpd(work: Path, n: int, args: argparse.Namespace, _workers: int) -> Result:
    """Messages per second, and the server's CPU milliseconds per message (total, kernel)."""
    maildir = work / f"aiosmtpd-maildir-{n}"  # mailbox.Maildir creates it with tmp/ new/ cur/
    port = free_port()
    cmd = [sys.executable, "-c", AIOSMTPD, str(maildir), str(port)]
    result = run_smtp_source(cmd, "ready", work / "aiosmtpd.log", port, args, stdin=True)
    delivered = count_files(maildir)
    assert delivered == args.messages, f"aiosmtpd stored {delivered} of {args.messages}"
    return result


def run_smtp_source(
    cmd: list[str], ready: str, log: Path, port: int, args: argparse.Namespace, *, stdin: bool = False
) -> Result:
    with process(cmd, ready, log, stdin=stdin) as proc:
        user0, sys0 = cpu_seconds(proc.pid)
        seconds = smtp_source(port, args.messages, args.sessions, args.size)
        user1, sys1 = cpu_seconds(proc.pid)
    per_message = 1000 / args.messages
    return (
        float(args.messages) / seconds,
        (user1 + sys1 - user0 - sys0) * per_message,
        (sys1 - sys0) * per_message,
    )


def fill_maildir(store: Path, count: int, size: int) -> Path:
    from netlab.store.maildir import MailStore

    box = MailStore(store).maildir(USER)
    line = b"x" * 76 + b"\n"
    for n in range(count):
        body = line * (size // len(line))
        box.deliver(f"From: bench@far.test\nTo: {USER}\nSubject: message {n}\n\n".encode() + body)
    return box.path


def give_to_mail_user(store: Path, maildir: Path) -> tuple[int, int]:
    """Dovecot will not read mail as root: the Maildir goes to the ``mail`` user for the run."""
    mail = pwd.getpwnam("mail")
    for d in (store, store / "mailboxes", maildir.parent):
        d.chmod(0o755)
    for path in [maildir, *maildir.rglob("*")]:
        os.chown(path, mail.pw_uid, mail.pw_gid)
    return mail.pw_uid, mail.pw_gid


def dovecot_config(work: Path, store: Path, maildir: Path, port: int) -> Path:
    uid, gid = give_to_mail_user(store, maildir)
    password_hash = (store / "users").read_text().split(f"{USER}:", 1)[1].split("\n", 1)[0].split(":")[0]
    (work / "dovecot-passwd").write_text(f"{USER}:{{ARGON2ID}}{password_hash}:{uid}:{gid}::{maildir}::\n")
    conf = work / "dovecot.conf"
    conf.write_text(
        f"base_dir = {work}/dovecot-run\nstate_dir = {work}/dovecot-state\n"
        f"log_path = {work}/dovecot.log\nprotocols = pop3\nlisten = 127.0.0.1\nssl = no\n"
        f"disable_plaintext_auth = no\nfirst_valid_uid = {uid}\nmail_location = maildir:~\n"
        f"passdb {{\n  driver = passwd-file\n  args = {work}/dovecot-passwd\n}}\n"
        f"userdb {{\n  driver = passwd-file\n  args = {work}/dovecot-passwd\n}}\n"
        "service pop3-login {\n  inet_listener pop3 {\n"
        f"    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n"
    )
    return conf


def pop3_fetch_all(port: int, count: int) -> float:
    """Seconds for one poplib session: login, RETR every message, QUIT (nothing deleted)."""
    start = time.perf_counter()
    client = poplib.POP3("127.0.0.1", port, timeout=60)
    client.user(USER)
    client.pass_(PASSWORD)
    messages, _ = client.stat()
    assert messages == count, f"maildrop has {messages} messages, expected {count}"
    for n in range(1, count + 1):
        client.retr(n)
    client.quit()
    return time.perf_counter() - start


def bench_pop3(work: Path, args: argparse.Namespace, record: Callable[[str, str, int, float], None]) -> None:
    store = work / "pop3-store"
    make_store(store)
    maildir = fill_maildir(store, args.pop3_messages, args.size)
    dovecot = shutil.which("dovecot", path="/usr/sbin:/usr/bin")
    if dovecot is None:
        raise SystemExit("dovecot not found (Debian package dovecot-pop3d)")
    pop3_port, dovecot_port = free_port(), free_port()
    cfg = netlab_config(work / "netlab-pop3.toml", store, free_port(), pop3_port)
    conf = dovecot_config(work, store, maildir, dovecot_port)
    with (
        process(
            [sys.executable, "-m", "netlab", "pop3d", "--config", str(cfg)], r"pop3://", work / "netlab.log"
        ),
        process([dovecot, "-F", "-c", str(conf)], f"port:{dovecot_port}", work / "dovecot-stderr.log"),
    ):
        for n in range(args.rounds):
            record("pop3", "netlab", n, pop3_fetch_all(pop3_port, args.pop3_messages))
            record("pop3", "dovecot", n, pop3_fetch_all(dovecot_port, args.pop3_messages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="smtp-source -m")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source -s")
    parser.add_argument("--size", type=int, default=4096, help="smtp-source -l, and the POP3 message size")
    parser.add_argument("--workers", type=int, default=2, help="netlab smtpd --workers (besides 1 process)")
    parser.add_argument("--pop3-messages", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--only", choices=["smtp", "pop3"], help="Run one half (results are not written).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the netlab package of this checkout, imported where used
    load_before = f"{os.getloadavg()[0]:.1f}"
    rows: list[tuple[str, str, int, float]] = []

    def record(test: str, server: str, n: int, value: float) -> None:
        rows.append((test, server, n, value))
        unit = UNITS[test]
        print(f"{test:<8} {server:<9} round {n + 1}: {value:9.2f} {unit}", flush=True)

    with tempfile.TemporaryDirectory(prefix="netlab-bench-mail-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        if args.only != "pop3":
            servers = [("netlab", bench_smtp_netlab, 1), ("aiosmtpd", bench_smtp_aiosmtpd, 1)]
            if args.workers > 1:
                servers.insert(1, (f"netlab-w{args.workers}", bench_smtp_netlab, args.workers))
            for n in range(args.rounds):
                # Every round stores into a new directory and nothing is deleted before the end:
                # on ext4 without a journal, creating files right after thousands were deleted
                # costs far more (the allocator skips recently freed inodes), which would charge
                # one server for the previous one's clean-up.  The order alternates, so that a
                # drift in the machine's load does not favour one server.
                for name, bench, workers in servers if n % 2 == 0 else servers[::-1]:
                    wait_until_quiet()
                    rate, cpu_ms, sys_ms = bench(work, n, args, workers)
                    record("smtp", name, n, rate)
                    record("smtp-cpu", name, n, cpu_ms)
                    record("smtp-sys", name, n, sys_ms)
        if args.only != "smtp":
            bench_pop3(work, args, record)
    if args.only is None:
        write_results(args, rows, f"{load_before} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
