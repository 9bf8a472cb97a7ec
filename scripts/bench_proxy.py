"""Benchmark: netlab proxy against Squid, both in front of the same nginx origin, driven by wrk.

Every round runs wrk (50 connections, absolute-form requests through a Lua script) against each
proxy in turn for each object size, so both see the same machine load; the script prints the
median requests/s and 99th-percentile latency of each, and the ratio netlab/Squid, and writes
``docs/bench/proxy.csv`` and ``docs/bench/proxy.md``.  The objects are cached (Cache-Control:
public, max-age=3600) and warmed before measuring: this measures serving hits.

    python scripts/bench_proxy.py [--duration 5] [--rounds 3] [--workers 2]

Needs nginx (nginx-light), squid and wrk; run as root so that Squid can drop to its own user.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = {"1k": 1024, "100k": 100 * 1024}
CONNECTIONS = 50


@dataclass
class Sample:
    proxy: str
    size: str
    round: int
    requests_per_s: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def running(command: list[str], port: int, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait for its port, and stop it by its PID (SIGTERM, then SIGKILL)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nginx_config(work: Path, port: int) -> Path:
    www = work / "www"
    www.mkdir()
    for name, size in OBJECTS.items():
        (www / name).write_bytes(os.urandom(size))
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        add_header Cache-Control "public, max-age=3600";
    }}
}}
"""
    )
    return conf


def squid_config(work: Path, port: int) -> Path:
    logs = work / "squid"
    logs.mkdir()
    shutil.chown(logs, user="proxy")  # Squid drops to this user and writes its logs here
    conf = work / "squid.conf"
    conf.write_text(
        f"""http_port 127.0.0.1:{port}
http_access allow localhost
http_access deny all
cache_mem 256 MB
maximum_object_size_in_memory 1 MB
pid_filename {logs}/squid.pid
cache_log {logs}/cache.log
access_log stdio:{logs}/access.log squid
shutdown_lifetime 1 second
pinger_enable off
"""
    )
    return conf


def lua_script(work: Path, origin_port: int, name: str) -> Path:
    script = work / f"fwd-{name}.lua"
    origin = f"127.0.0.1:{origin_port}"
    script.write_text(f'wrk.path = "http://{origin}/{name}"\nwrk.headers["Host"] = "{origin}"\n')
    return script


def warm(proxy_port: int, origin_port: int) -> None:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    for name in OBJECTS:
        for _ in range(3):
            with opener.open(f"http://127.0.0.1:{origin_port}/{name}", timeout=10) as response:
                response.read()


def run_wrk(wrk: str, script: Path, proxy_port: int, duration: int) -> tuple[float, float]:
    out = subprocess.run(
        [
            wrk,
            "-c",
            str(CONNECTIONS),
            "-t",
            "2",
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{proxy_port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="netlab proxy processes")
    args = parser.parse_args()
    tools = {
        name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        for name in ("nginx", "squid", "wrk")
    }
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        print(f"missing: {', '.join(missing)} (Debian packages nginx-light, squid, wrk)", file=sys.stderr)
        return 2
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        origin_port, squid_port, netlab_port = free_port(), free_port(), free_port()
        netlab = [
            sys.executable, "-m", "netlab", "proxy", "--listen", f"127.0.0.1:{netlab_port}",
            "--cache-dir", str(work / "netlab-cache"), "--access-log", str(work / "netlab-access.log"),
            "--workers", str(args.workers),
        ]  # fmt: skip
        with (
            running(
                [str(tools["nginx"]), "-c", str(nginx_config(work, origin_port)), "-g", "daemon off;"],
                origin_port,
            ),
            running([str(tools["squid"]), "-N", "-f", str(squid_config(work, squid_port))], squid_port),
            running(netlab, netlab_port, cwd=ROOT),
        ):
            proxies = {"netlab": netlab_port, "squid": squid_port}
            for port in proxies.values():
                warm(port, origin_port)
            scripts = {name: lua_script(work, origin_port, name) for name in OBJECTS}
            for round_number in range(args.rounds):
                order = list(proxies) if round_number % 2 == 0 else list(reversed(proxies))
                for size in OBJECTS:
                    for name in order:
                        rps, p99 = run_wrk(str(tools["wrk"]), scripts[size], proxies[name], args.duration)
                        samples.append(Sample(name, size, round_number, rps, p99))
                        print(
                            f"round {round_number} {size:>4} {name:<6} {rps:9.0f} req/s  p99 {p99:7.2f} ms",
                            flush=True,
                        )
    report(samples, args)
    return 0


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    out = ROOT / "docs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "proxy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["proxy", "object", "round", "requests_per_s", "p99_ms"])
        for s in samples:
            writer.writerow([s.proxy, s.size, s.round, f"{s.requests_per_s:.0f}", f"{s.p99_ms:.2f}"])
    rows = []
    for size in OBJECTS:
        med = {
            name: (
                statistics.median(s.requests_per_s for s in samples if s.proxy == name and s.size == size),
                statistics.median(s.p99_ms for s in samples if s.proxy == name and s.size == size),
            )
            for name in ("netlab", "squid")
        }
        ratio = med["netlab"][0] / med["squid"][0]
        rows.append((size, med["netlab"], med["squid"], ratio))
        (n_rps, n_p99), (s_rps, s_p99) = med["netlab"], med["squid"]
        print(
            f"{size:>4}: netlab {n_rps:.0f} req/s (p99 {n_p99:.2f} ms), "
            f"squid {s_rps:.0f} req/s (p99 {s_p99:.2f} ms), ratio {ratio:.2f}"
        )
    table = "\n".join(
        f"| {size} | {n[0]:.0f} | {n[1]:.2f} | {s[0]:.0f} | {s[1]:.2f} | {ratio:.2f} |"
        for size, n, s, ratio in rows
    )
    (out / "proxy.md").write_text(
        f"""# netlab proxy vs Squid: cached objects

`scripts/bench_proxy.py --duration {args.duration} --rounds {args.rounds} --workers {args.workers}`: wrk with
{CONNECTIONS} connections and 2 threads sends absolute-form GETs for one cached object through each proxy,
both in front of the same nginx origin (`Cache-Control: public, max-age=3600`).  Squid 5 runs as
PEERS.md configures it (memory cache, one process); netlab runs {args.workers} worker process(es)
sharing the port (SO_REUSEPORT) and the cache.  Both write an access log.  Rounds alternate the
order of the two proxies; the figures are medians over the rounds.

| object | netlab req/s | netlab p99 ms | Squid req/s | Squid p99 ms | netlab / Squid |
| --- | --- | --- | --- | --- | --- |
{table}

Raw samples: `proxy.csv`.  The machine has 2 cores shared by wrk, both proxies' idle peers and
anything else running, so absolute numbers move from run to run; the ratio is the figure to read.
"""
    )


if __name__ == "__main__":
    sys.exit(main())
