"""The offline lab (netlab.lab): every documented name resolves from the root hints, on real sockets."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
from dnslib import QTYPE, DNSRecord

from netlab.aio.dns_exchange import ExchangeError, exchange_udp
from netlab.aio.dns_iterate import resolve_once
from netlab.lab import MAIL_DOMAINS, SERVERS, WEB_ORIGIN, LabHost, LabInfo, start_lab, zone_dir
from netlab.proto.dns_events import Answer
from netlab.proto.dns_hints import parse_root_hints
from netlab.proto.dns_resolve import Resolver
from netlab.proto.dns_rrset import name_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def lab() -> AsyncIterator[LabInfo]:
    async with trio.open_nursery() as nursery:
        info: LabInfo = await nursery.start(partial(start_lab, port=0))
        yield info
        nursery.cancel_scope.cancel()


async def trace(info: LabInfo, name: str, qtype: str = "A") -> Answer:
    """Iterate from the lab's root hints as ``netlab dig +trace`` does."""
    machine = Resolver.for_trace(parse_root_hints(info.hints_text()), random.Random(5), port=info.port)
    with trio.fail_after(20):
        return await resolve_once(machine, name_of(name), getattr(QTYPE, qtype))


def data(answer: Answer) -> list[str]:
    assert answer.rcode == 0, answer
    return [f"{rr.rname} {QTYPE.get(rr.rtype)} {rr.rdata.toZone()}" for rr in answer.answer]


@pytest.mark.timeout(60)
async def test_documented_names_resolve(lab: LabInfo) -> None:
    assert lab.port > 1024
    assert data(await trace(lab, WEB_ORIGIN.name)) == [f"www.shop.test. A {WEB_ORIGIN.address}"]
    for domain in MAIL_DOMAINS:
        mx = data(await trace(lab, domain.domain, "MX"))
        assert mx == [f"{domain.domain}. MX {10 * (i + 1)} {h.name}." for i, h in enumerate(domain.mx)]
        for host in domain.mx:
            assert data(await trace(lab, host.name)) == [f"{host.name}. A {host.address}"]
    assert data(await trace(lab, "images.shop.test")) == [
        "images.shop.test. CNAME cdn.shop.test.",
        "cdn.shop.test. CNAME edge.cdn.example.",
    ]
    assert data(await trace(lab, "edge.cdn.example")) == [
        "edge.cdn.example. CNAME edge1.cdn.example.",
        "edge1.cdn.example. A 127.0.0.80",
    ]
    assert data(await trace(lab, "anything.apps.shop.test")) == ["anything.apps.shop.test. A 127.0.0.81"]
    assert data(await trace(lab, "80.0.0.127.in-addr.arpa", "PTR")) == [
        "80.0.0.127.in-addr.arpa. PTR www.shop.test."
    ]
    assert data(await trace(lab, "www.backup.test")) == ["www.backup.test. A 127.0.0.80"]
    assert data(await trace(lab, "www.eu.shop.test")) == ["www.eu.shop.test. A 127.0.0.80"]
    nx = await trace(lab, "x.b.apps.shop.test")
    assert nx.rcode == 3


async def test_eu_shop_test_is_a_third_delegation(lab: LabInfo) -> None:
    """www.eu.shop.test is three referrals down: the root, test. and shop.test. each refer."""
    steps = [("127.0.0.2", "test."), ("127.0.0.3", "shop.test."), ("127.0.0.10", "eu.shop.test.")]
    for server, zone_cut in steps:
        reply = DNSRecord.parse(
            await exchange_udp(DNSRecord.question("www.eu.shop.test").pack(), (server, lab.port))
        )
        assert not reply.rr and not reply.header.aa
        assert [str(rr.rname) for rr in reply.auth] == [zone_cut]
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.ar] == [("ns1.eu.shop.test.", "127.0.0.17")]
    answer = DNSRecord.parse(
        await exchange_udp(DNSRecord.question("www.eu.shop.test").pack(), ("127.0.0.17", lab.port))
    )
    assert answer.header.aa and [str(rr.rdata) for rr in answer.rr] == ["127.0.0.80"]


@pytest.mark.timeout(60)
async def test_broken_parts_of_the_lab(lab: LabInfo) -> None:
    assert (await trace(lab, "www.lame.test")).rcode == 2  # SERVFAIL
    # stale.test's server refers back to stale.test itself: "no data", as unbound says too.
    assert (await trace(lab, "www.stale.test")) == Answer(0)
    lame = lab.server("ns1.lame.test")
    reply = DNSRecord.parse(
        await exchange_udp(DNSRecord.question("www.lame.test").pack(), (lame.address, lab.port))
    )
    assert reply.header.rcode == 5
    dead = lab.server("ns1.dead.test")
    with pytest.raises(ExchangeError):
        await exchange_udp(
            DNSRecord.question("www.dead.test").pack(), (dead.address, lab.port), retry_after=0.2, tries=1
        )


def test_every_server_has_its_own_address_and_zones_exist() -> None:
    assert len({s.address for s in SERVERS}) == len(SERVERS)
    shipped = {p.name for p in zone_dir().glob("*.zone")}
    assert {z for s in SERVERS for z in s.zones} == shipped


def test_info_round_trips_and_is_recorded(tmp_path: Path) -> None:
    info = LabInfo(port=5353, root_hints=(LabHost(SERVERS[0].name, SERVERS[0].address),))
    info.save(tmp_path)
    assert LabInfo.load(tmp_path) == info
    assert "a.root-servers.test.\t3600000\tA\t127.0.0.2" in (tmp_path / "root.hints").read_text()


def test_lab_zones_command_prints_the_shipped_directory() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netlab", "lab", "zones"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert Path(out.strip()) == zone_dir()
    assert (Path(out.strip()) / "root.zone").exists()
