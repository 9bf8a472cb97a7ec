"""Benchmark: ``netlab dns resolver`` and unbound side by side, both resolving from the lab.

The lab (``netlab lab up``) runs on port 53 of 127.0.0.x, which unbound needs (glue carries no
port), so this needs root.  Both resolvers start from the lab's root hints, one process each,
query logs off, pinned to the same CPU with dnsperf on the other; runs alternate between them.

1. Warm cache: dnsperf asks 100 names (the lab's wildcard ``*.apps.shop.test``) once to fill the
   caches, then for ``--duration`` seconds; median queries per second, and CPU time per query
   (from /proc), which is steadier on a shared machine.
2. Cold cache: before every question both resolvers forget everything they learnt: unbound by
   ``unbound-control reload`` and ``flush_infra all``, netlab by SIGHUP (cache, server
   statistics and kept replies); the time to the answer, measured at the client.
   ``www.eu.shop.test`` is three delegations deep: four servers (the root, ``test.``,
   ``shop.test.``, ``eu.shop.test.``); ``www.shop.test`` takes three;
   ``www.beta.test`` adds a glueless delegation (its server's address is looked up under
   ``example.``); ``images.shop.test`` is a CNAME chain into ``cdn.example.``.
3. Memory: fresh resolvers asked 100,000 distinct names once each; the growth of their resident
   set size divided by the names answered.

Results go to docs/bench/resolver.csv and docs/bench/resolver.md.  ``--only PART`` (repeatable)
runs only those parts and keeps the other parts' results from the CSV of an earlier run.

    python scripts/bench_resolver.py [--duration 10] [--repeats 3] [--names 100000] [--only cold]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dnslib
from bench_dns import dnsperf, free_port, pinned, stop, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
WARM_NAMES = [f"w{i}.apps.shop.test A" for i in range(100)]
COLD_NAMES = ["www.eu.shop.test", "www.shop.test", "www.beta.test", "images.shop.test"]
PARTS = ("warm", "cold", "memory")
SERVERS = ("netlab", "unbound")

UNBOUND_CONF = """server:
    interface: 127.0.0.1@{port}
    port: {port}
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound-{port}.pid"
    use-syslog: no
    logfile: "{dir}/unbound-{port}.log"
    verbosity: 0
    num-threads: 1
    do-not-query-localhost: no
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    root-hints: "{hints}"
    local-zone: "test." nodefault
    local-zone: "127.in-addr.arpa." nodefault
    # Room for every name of the memory test, so that it measures caching, not eviction.
    msg-cache-size: 256m
    rrset-cache-size: 512m
remote-control:
    control-enable: yes
    control-interface: 127.0.0.1
    control-port: {control}
    control-use-cert: no
"""


@dataclass
class Row:
    test: str
    server: str
    repeat: int
    metric: str
    value: float


@dataclass
class Bench:
    workdir: Path
    config: Path
    hints: Path
    unbound: str
    dnsperf: str
    server_cpu: int | None
    load_cpu: int | None

    def start(self, server: str, port: int) -> subprocess.Popen[bytes]:
        if server == "netlab":
            args = [sys.executable, "-m", "netlab", "--log-level", "WARNING", "dns", "resolver", "--lab"]
            args += ["--listen", f"127.0.0.1:{port}", "--config", str(self.config)]
        else:
            conf = self.workdir / f"unbound-{port}.conf"
            conf.write_text(
                UNBOUND_CONF.format(port=port, dir=self.workdir, hints=self.hints, control=free_port())
            )
            args = [self.unbound, "-d", "-c", str(conf)]
        proc = subprocess.Popen(
            pinned(self.server_cpu, args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_ready(port)
        return proc


def flush(bench: Bench, server: str, proc: subprocess.Popen[bytes], port: int) -> None:
    """Make ``server`` forget every cached record and everything it learnt about the servers."""
    if server == "netlab":
        proc.send_signal(signal.SIGHUP)
        # Without recursion desired it answers from its cache alone: REFUSED once that is empty.
        end = time.monotonic() + 10
        while ask(port, COLD_NAMES[0], recurse=False)[0] != dnslib.RCODE.REFUSED:
            if time.monotonic() > end:
                raise SystemExit("netlab did not flush its cache on SIGHUP")
            time.sleep(0.01)
    else:
        control = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
        conf = str(bench.workdir / f"unbound-{port}.conf")
        for command in (["reload"], ["flush_infra", "all"]):
            subprocess.run([control, "-c", conf, *command], check=True, capture_output=True, timeout=30)
    wait_ready(port)


def ask(
    port: int, name: str, qtype: str = "A", qclass: str = "IN", timeout: float = 10.0, *, recurse: bool = True
) -> tuple[int, float]:
    """(RCODE, seconds) of one query over UDP, timed at the client."""
    query = dnslib.DNSRecord.question(name, qtype, qclass)
    query.header.rd = int(recurse)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        start = time.perf_counter()
        s.sendto(query.pack(), ("127.0.0.1", port))
        while True:
            reply = dnslib.DNSRecord.parse(s.recv(65535))
            if reply.header.id == query.header.id:
                return reply.header.rcode, time.perf_counter() - start


def wait_ready(port: int, deadline: float = 30.0) -> None:
    """Until the server answers a CHAOS question (which neither resolver answers from its cache)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            ask(port, "version.bind", "TXT", "CH", timeout=0.2)
            return
        except (TimeoutError, ConnectionRefusedError):
            time.sleep(0.05)
    raise SystemExit(f"no resolver answering on port {port}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def warm_cache(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    queries = bench.workdir / "warm.txt"
    queries.write_text("\n".join(WARM_NAMES) + "\n")
    ports = {name: free_port() for name in SERVERS}
    procs = {name: bench.start(name, ports[name]) for name in SERVERS}
    try:
        for repeat in range(1, args.repeats + 1):
            for name in SERVERS if repeat % 2 else reversed(SERVERS):
                # Fill (or refill) the cache, then measure.
                dnsperf(bench.dnsperf, ports[name], queries, 1, args.clients, bench.load_cpu)
                before = tree_cpu_seconds(procs[name].pid)
                qps, completed, lost = dnsperf(
                    bench.dnsperf, ports[name], queries, args.duration, args.clients, bench.load_cpu
                )
                cpu_us = 1e6 * (tree_cpu_seconds(procs[name].pid) - before) / max(completed, 1)
                print(
                    f"  warm  {name:<8} run {repeat}: {qps:>8.0f} q/s, {lost} lost, {cpu_us:.1f} us CPU/query"
                )
                rows += [Row("warm", name, repeat, "qps", qps), Row("warm", name, repeat, "cpu_us", cpu_us)]
    finally:
        for proc in procs.values():
            stop(proc)
    return rows


def cold_cache(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    ports = {name: free_port() for name in SERVERS}
    procs = {name: bench.start(name, ports[name]) for name in SERVERS}
    try:
        for name in SERVERS:
            for qname in COLD_NAMES:  # the same code paths run once before anything is timed
                ask(ports[name], qname)
        for repeat in range(1, args.cold_repeats + 1):
            for qname in COLD_NAMES:
                for name in SERVERS if repeat % 2 else reversed(SERVERS):
                    flush(bench, name, procs[name], ports[name])
                    rcode, seconds = ask(ports[name], qname)
                    if rcode != 0:
                        raise SystemExit(f"{name}: {qname} answered {dnslib.RCODE.get(rcode)}")
                    print(f"  cold  {name:<8} {qname:<17} run {repeat}: {1000 * seconds:.2f} ms")
                    rows.append(Row(f"cold {qname}", name, repeat, "ms", 1000 * seconds))
    finally:
        for proc in procs.values():
            stop(proc)
    return rows


def memory(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    queries = bench.workdir / "memory.txt"
    queries.write_text("".join(f"m{i}.apps.shop.test A\n" for i in range(args.names)))
    for name in SERVERS:
        port = free_port()
        proc = bench.start(name, port)
        try:
            ask(port, "warm-up.apps.shop.test")  # the delegations are learnt before the baseline
            time.sleep(0.5)
            before = rss_kib(proc.pid)
            command = [bench.dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-n", "1"]
            command += ["-c", "4", "-q", "100", "-t", "10"]
            out = subprocess.run(
                pinned(bench.load_cpu, command), capture_output=True, text=True, check=True, timeout=900
            ).stdout
            completed = int(out.split("Queries completed:")[1].split()[0])
            time.sleep(0.5)
            after = rss_kib(proc.pid)
        finally:
            stop(proc)
        per_name = 1024 * (after - before) / max(completed, 1)
        print(f"  mem   {name:<8} {completed} names: RSS {before} -> {after} KiB, {per_name:.0f} bytes/name")
        rows += [
            Row("memory", name, 1, "names", completed),
            Row("memory", name, 1, "rss_before_kib", before),
            Row("memory", name, 1, "rss_after_kib", after),
            Row("memory", name, 1, "bytes_per_name", per_name),
        ]
    return rows


def median(rows: list[Row], test: str, server: str, metric: str) -> float:
    return statistics.median(r.value for r in rows if (r.test, r.server, r.metric) == (test, server, metric))


def write_results(rows: list[Row], args: argparse.Namespace, unbound_version: str) -> None:
    out_dir = ROOT / "docs" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "resolver.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["test", "server", "repeat", "metric", "value"])
        for r in rows:
            writer.writerow([r.test, r.server, r.repeat, r.metric, f"{r.value:.3f}"])

    def m(test: str, metric: str) -> Callable[[str], float]:
        return lambda server: median(rows, test, server, metric)

    qps, cpu = m("warm", "qps"), m("warm", "cpu_us")
    cold_lines = []
    for qname in COLD_NAMES:
        ms = m(f"cold {qname}", "ms")
        ours, theirs = ms("netlab"), ms("unbound")
        fastest = {
            s: min(r.value for r in rows if (r.test, r.server) == (f"cold {qname}", s)) for s in SERVERS
        }
        cold_lines.append(
            f"| `{qname}` | {ours:.2f} ms | {theirs:.2f} ms | {ours / theirs:.2f}x "
            f"| {fastest['netlab'] / fastest['unbound']:.2f}x |"
        )
    mem = m("memory", "bytes_per_name")
    names = m("memory", "names")
    cold = "\n".join(cold_lines)
    only = "".join(f" --only {part}" for part in args.only or ())
    kept = (
        f"\n\nThis run measured only: {', '.join(args.only)}; the rest is from an earlier run."
        if only
        else ""
    )
    text = f"""# Recursive resolver: netlab dns resolver vs unbound

`python scripts/bench_resolver.py --duration {args.duration} --repeats {args.repeats} \
--cold-repeats {args.cold_repeats} --names {args.names}{only}`{kept}

Both resolvers resolve from the offline lab (port 53 of 127.0.0.x) with its root hints: netlab's
in one process with its query log off; {unbound_version}, one thread, iterator only, caches sized
for the memory test.  Server pinned to CPU 1 and dnsperf to CPU 0 when there are two; the
machine ({os.cpu_count()} CPUs, Python {platform.python_version()}) is shared with other work, so
CPU time per query (warm) and the fastest runs (cold) are the steadier figures.

## 1. Warm cache: dnsperf, 100 names

`dnsperf -c {args.clients} -q 200 -l {args.duration}` over 100 names answered from the cache.

| server | median q/s | median CPU per query |
| --- | ---: | ---: |
| netlab | {qps("netlab"):.0f} | {cpu("netlab"):.1f} us |
| unbound | {qps("unbound"):.0f} | {cpu("unbound"):.1f} us |

**Ratio netlab / unbound: {qps("netlab") / qps("unbound"):.2f}x** in queries per second (target: at
least 0.3x).  A repeated question is answered in the server core's receive loop from the reply
kept for it (for about a second, never past a TTL), and otherwise from the cache.

## 2. Cold cache: time to the first answer

Before each question both resolvers forget everything they learnt (unbound: `unbound-control
reload` and `flush_infra all`; netlab: SIGHUP); median of {args.cold_repeats} runs, measured at the
client.

| name | netlab (median) | unbound (median) | ratio of medians | ratio of fastest runs |
| --- | ---: | ---: | ---: | ---: |
{cold}

Target: at most 2x unbound.  `www.eu.shop.test` is three delegations deep: it is answered by the
fourth server down (the root, `test.`, `shop.test.`, `eu.shop.test.`), after priming (RFC 8109);
`www.shop.test` by the third; `www.beta.test` adds a glueless delegation whose server's address
is looked up under `example.` first; `images.shop.test` is a CNAME chain that continues under
`cdn.example.`.  Both resolvers prime and minimise the names they send (RFC 9156).

## 3. Memory: {int(names("netlab"))} names cached

Growth of the resident set while each resolver answers {args.names} distinct names once
(`dnsperf -n 1`), divided by the names answered.

| server | names answered | bytes per name |
| --- | ---: | ---: |
| netlab | {int(names("netlab"))} | {mem("netlab"):.0f} |
| unbound | {int(names("unbound"))} | {mem("unbound"):.0f} |

Every run is in `resolver.csv`.
"""
    (out_dir / "resolver.md").write_text(text)
    print(
        f"\nwarm: netlab {qps('netlab'):.0f} q/s, unbound {qps('unbound'):.0f} q/s, ratio "
        f"{qps('netlab') / qps('unbound'):.2f}"
    )
    print(cold.replace("|", " "))
    print(f"memory: netlab {mem('netlab'):.0f} B/name, unbound {mem('unbound'):.0f} B/name")


def earlier_rows(parts: set[str]) -> list[Row]:
    """The rows of ``parts`` from the CSV of an earlier run (for ``--only``)."""
    rows = []
    with open(ROOT / "docs" / "bench" / "resolver.csv", newline="") as f:
        for raw in csv.DictReader(f):
            if raw["test"].split()[0] in parts:
                rows.append(
                    Row(raw["test"], raw["server"], int(raw["repeat"]), raw["metric"], float(raw["value"]))
                )
    return rows


def start_lab(workdir: Path, config: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "netlab", "--log-level", "WARNING", "lab", "up", "--config", str(config)]
    lab = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = workdir / "lab" / "lab.json"
    end = time.monotonic() + 30
    while not state.exists():
        if lab.poll() is not None or time.monotonic() > end:
            stop(lab)
            raise SystemExit("the lab did not start")
        time.sleep(0.1)
    if json.loads(state.read_text())["port"] != 53:
        stop(lab)
        raise SystemExit("the lab cannot bind port 53 on 127.0.0.x (run as root, with port 53 free)")
    return lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per warm-cache dnsperf run")
    parser.add_argument("--repeats", type=int, default=3, help="warm-cache runs per resolver")
    parser.add_argument("--cold-repeats", type=int, default=15, help="cold-cache runs per resolver and name")
    parser.add_argument("--names", type=int, default=100_000, help="names for the memory test")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and dnsperf to CPUs")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part (repeatable); keep the others' results",
    )
    args = parser.parse_args()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    dnsperf_path = shutil.which("dnsperf")
    unbound = shutil.which("unbound") or shutil.which("unbound", path="/usr/sbin:/sbin")
    if dnsperf_path is None or unbound is None:
        raise SystemExit("needs dnsperf and unbound (Debian packages dnsperf, unbound)")
    version = subprocess.run([unbound, "-V"], capture_output=True, text=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = workdir / "netlab.toml"
        config.write_text(
            f'[general]\ndata_dir = "{workdir}"\n[lab]\nport = 53\nstate_dir = "{workdir}/lab"\n'
            "[resolver]\nquery_log = false\n"
        )
        lab = start_lab(workdir, config)
        bench = Bench(
            workdir,
            config,
            workdir / "lab" / "root.hints",
            unbound,
            dnsperf_path,
            1 if pin else None,
            0 if pin else None,
        )
        parts = {"warm": warm_cache, "cold": cold_cache, "memory": memory}
        rows = earlier_rows(set(PARTS) - set(args.only)) if args.only else []
        try:
            for number, (part, run) in enumerate(parts.items(), 1):
                if not args.only or part in args.only:
                    print(f"{number}. {part}")
                    rows += run(bench, args)
        finally:
            stop(lab)
    write_results(rows, args, version.replace("Version ", "unbound "))


if __name__ == "__main__":
    main()
