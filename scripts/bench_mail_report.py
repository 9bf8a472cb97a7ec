"""The report of ``scripts/bench_mail.py``: medians, ratios, docs/bench/mail.{csv,md}."""

from __future__ import annotations

import argparse
import csv
import statistics

UNITS = {"smtp": "msg/s", "smtp-cpu": "ms CPU/msg", "smtp-sys": "ms CPU/msg", "pop3": "s"}
Rows = list[tuple[str, str, int, float]]  # (test, server, round, value)


def median(rows: Rows, test: str, server: str) -> float:
    return statistics.median(v for t, s, _, v in rows if t == test and s == server)


def write_results(args: argparse.Namespace, rows: Rows, load: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "mail.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["test", "server", "round", "value", "unit"])
        for test, server, n, value in rows:
            writer.writerow([test, server, n + 1, f"{value:.3f}", UNITS[test]])
    best = f"netlab-w{args.workers}" if args.workers > 1 else "netlab"
    names = {best: f"netlab, {args.workers} pinned worker processes", "netlab": "netlab, one process"}

    def m(test: str, server: str) -> float:
        return median(rows, test, server)

    aio = m("smtp", "aiosmtpd")
    pop_netlab, pop_dovecot = m("pop3", "netlab"), m("pop3", "dovecot")
    summary = [
        f"SMTP  {names[s]:<34} {m('smtp', s):7.0f} msg/s  ratio {m('smtp', s) / aio:.2f}x   "
        f"CPU {m('smtp-cpu', s):.2f} ms/msg ({m('smtp-sys', s):.2f} kernel)"
        for s in dict.fromkeys([best, "netlab"])
    ]
    summary += [
        f"SMTP  {'aiosmtpd':<34} {aio:7.0f} msg/s  (target: netlab >= 2x)   "
        f"CPU {m('smtp-cpu', 'aiosmtpd'):.2f} ms/msg ({m('smtp-sys', 'aiosmtpd'):.2f} kernel)",
        f"POP3  netlab {pop_netlab:.3f} s, dovecot {pop_dovecot:.3f} s, "
        f"ratio {pop_netlab / pop_dovecot:.2f}x (target <= 2x)",
    ]
    print("\n".join(summary))

    def rounds(test: str, server: str, fmt: str) -> str:
        return ", ".join(format(v, fmt) for t, s, _, v in rows if t == test and s == server)

    smtp = f"smtp-source -s {args.sessions} -m {args.messages} -l {args.size}"
    table = ["| test | netlab | peer | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for s in dict.fromkeys([best, "netlab"]):
        target = ">= 2x" if s == best else ""
        table.append(
            f"| SMTP: {smtp}, {names[s]} | {m('smtp', s):.0f} msg/s | aiosmtpd (Maildir) {aio:.0f} msg/s "
            f"| {m('smtp', s) / aio:.2f}x | {target} |"
        )
    for s in dict.fromkeys([best, "netlab"]):
        cpu, kernel = m("smtp-cpu", s), m("smtp-sys", s)
        aio_cpu, aio_kernel = m("smtp-cpu", "aiosmtpd"), m("smtp-sys", "aiosmtpd")
        table.append(
            f"| SMTP server CPU per message, {names[s]} | {cpu:.2f} ms ({kernel:.2f} kernel) "
            f"| {aio_cpu:.2f} ms ({aio_kernel:.2f} kernel) | {cpu / aio_cpu:.2f}x | |"
        )
    table.append(
        f"| POP3: poplib login + RETR of {args.pop3_messages} x {args.size} B | {pop_netlab:.3f} s "
        f"| Dovecot {pop_dovecot:.3f} s | {pop_netlab / pop_dovecot:.2f}x | <= 2x |"
    )
    per_round = [
        f"{names.get(s, s)}: {rounds('smtp', s, '.0f')} msg/s, {rounds('smtp-cpu', s, '.2f')} ms CPU/msg"
        for s in dict.fromkeys([best, "netlab", "aiosmtpd"])
    ]
    (args.out / "mail.md").write_text(
        "# Mail benchmark\n\n"
        f"`scripts/bench_mail.py`, medians of {args.rounds} interleaved rounds, servers on 127.0.0.1,\n"
        f"one machine with 2 cores shared with other work (load average {load}), ext4.\n\n"
        + "\n".join(table)
        + "\n\nRounds: "
        + "; ".join(per_round)
        + f".  POP3 (s): netlab {rounds('pop3', 'netlab', '.3f')}; "
        + f"Dovecot {rounds('pop3', 'dovecot', '.3f')}."
        + "\n\n"
        + NOTES
    )


NOTES = """\
netlab answers 250 only after the message file is fsynced, renamed into `new/`, and `new/` is
fsynced.  The messages its sessions hand over at about the same time are committed together: one
worker-thread call writes and fsyncs each file, renames them all and then fsyncs each `new/` once
(group commit).  aiosmtpd's Maildir handler writes and fsyncs each message on its event loop and
does not fsync the directory.  smtp-source does not pipeline, so every message costs a TCP
connection and seven request/reply round trips on both servers.  The two POP3 servers check the
same argon2id hash.  Raw numbers per round: `mail.csv`.

One netlab process is bound by one core, as aiosmtpd is.  `--workers 2` runs two worker
processes that share the listening socket and the Maildir (the parent only supervises them and
runs the relay), and `--pin-workers` keeps each on a CPU of its own: a worker's event loop and
its commit thread then hand the GIL to each other on one CPU instead of waking each other across
two, which on this virtual machine is worth about a tenth of the throughput.  smtp-source runs
on the same two CPUs.

CPU per message is the user and system time of the server's processes (all their threads) while
smtp-source runs, divided by the messages; it is the steadier figure, while throughput moves with
whatever else the two shared cores are doing.  The script waits for the machine to be idle before
each run, alternates the order of the servers from round to round, and times smtp-source with a
blocking wait.  Every round stores into a new directory and nothing is deleted before the end: on
ext4 without a journal, as here, creating a file soon after thousands were deleted costs up to
half a millisecond of kernel time (the inode allocator steps over recently freed inodes), so
cleaning up one server's files between rounds charged the next server for it (and a second run
within minutes of the first pays for the first one's clean-up).
"""
