"""``netlab dns serve`` on real sockets (127.0.0.1, port 0), alone and under ``netlab up --lab``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from dnslib import DNSRecord

from netlab.aio.dns_exchange import exchange_tcp, exchange_udp
from netlab.aio.shutdown import Lifetime
from netlab.config import DnsConfig
from netlab.lab import zone_dir
from netlab.proto.dns_zone import ZoneError
from servers.dns_auth import load_zones, serve
from tests.processes import isolated_config, netlab, netlab_command, read_line, running

ZONES = [str(zone_dir() / name) for name in ("test.zone", "shop.test.zone", "example.zone")]


async def test_serves_udp_and_tcp_on_one_port() -> None:
    lifetime = Lifetime()
    config = DnsConfig(listen="127.0.0.1:0", zones=tuple(ZONES), query_log=False)
    async with trio.open_nursery() as nursery:
        lines = await nursery.start(
            lambda task_status: serve(config, load_zones(ZONES), lifetime, task_status=task_status)
        )
        assert "zones: test., shop.test., example." in lines[0]
        port = int(lines[0].split(" on ")[1].split(" ")[0].rsplit(":", 1)[1])
        with trio.fail_after(10):
            udp = DNSRecord.parse(
                await exchange_udp(DNSRecord.question("www.shop.test").pack(), ("127.0.0.1", port))
            )
            tcp = DNSRecord.parse(
                await exchange_tcp(DNSRecord.question("big.example", "TXT").pack(), ("127.0.0.1", port))
            )
        assert str(udp.rr[0].rdata) == "127.0.0.80"
        assert len(tcp.rr) == 20
        lifetime.stop()


def test_zone_errors_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.test.zone"
    bad.write_text("$TTL 60\n@ SOA ns h 1 1 1 1 1\n")  # no NS
    with pytest.raises(ZoneError, match="no NS"):
        load_zones([bad])
    result = netlab("dns", "serve", "--listen", "127.0.0.1:0", "--zone", str(bad))
    assert result.returncode == 1
    assert "no NS" in result.stderr
    assert netlab("dns", "serve").returncode == 2  # no zones: a usage error
    assert "--zone" in netlab("dns", "serve", "--help", check=True).stdout


@pytest.mark.timeout(120)
def test_serve_then_dig(tmp_path: Path) -> None:
    args = netlab_command("dns", "serve", "--listen", "127.0.0.1:0")
    for zone in ZONES:
        args += ["--zone", zone]
    with running(args, stderr=tmp_path / "log") as proc:
        line = read_line(proc)
        port = line.split(" on ")[1].split(" ")[0].rsplit(":", 1)[1]
        out = netlab("dig", "alpha.test", "MX", f"@127.0.0.1:{port}", "+norecurse", check=True).stdout
        assert ";; flags: qr; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 2" in out  # a referral
        assert "alpha.test.\t\t86400\tIN\tNS\tns1.alpha.test." in out
        out = netlab("dig", "big.example", "TXT", "@127.0.0.1", "-p", port, check=True).stdout
        assert ";; Truncated, retrying in TCP mode." in out
        assert "(TCP)" in out
        short = netlab("dig", "+short", "static.shop.test", f"@127.0.0.1:{port}", check=True).stdout
        assert short.split() == ["www.shop.test.", "127.0.0.80"]
    assert proc.returncode == 0
    assert "127.0.0.1#" in (tmp_path / "log").read_text()  # the query log


@pytest.mark.timeout(120)
def test_up_with_the_lab(tmp_path: Path) -> None:
    # Every other service on a free port too: nothing here depends on a fixed one being free.
    config = isolated_config(tmp_path, lab={"port": 0}, dns={"zones": [ZONES[1]]})
    with running(netlab_command("up", "--lab", "--config", str(config)), stderr=tmp_path / "err") as proc:
        lines = [read_line(proc)]
        while not lines[-1].startswith("dns"):
            lines.append(read_line(proc))
        assert lines[0].startswith("lab      lab on port ")
        assert (tmp_path / "data" / "lab" / "lab.json").exists()
        # dig +trace finds the running lab's hints and port by itself.
        out = netlab(
            "--log-level", "ERROR", "dig", "+trace", "www.shop.test", "--config", str(config), check=True
        ).stdout
        assert "www.shop.test.\t\t300\tIN\tA\t127.0.0.80" in out
        assert "(ns1.shop.test)" in out
    assert proc.returncode == 0
    assert not (tmp_path / "data" / "lab" / "lab.json").exists()
