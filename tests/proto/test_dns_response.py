"""Sorting upstream responses: a table of the kinds, and what each may carry into the cache."""

from __future__ import annotations

from dataclasses import dataclass

import dnslib
import pytest

from netlab.proto.dns_response import Kind, classify
from netlab.proto.dns_rrset import name_of, to_text

A = dnslib.QTYPE.A
SOA = "shop.test. 300 SOA ns1.shop.test. host.shop.test. 1 2 3 4 60"


@dataclass(frozen=True)
class Case:
    zone: str
    qname: str
    kind: Kind
    answer: tuple[str, ...] = ()
    auth: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    aa: bool = True
    ra: bool = False
    rcode: int = 0
    edns: bool = True
    # expectations
    kept: tuple[str, ...] = ()  # owner names of the answer RRsets kept, in order
    next_name: str | None = None
    soa: bool = False
    referral: str | None = None
    glue: tuple[str, ...] = ()
    authoritative: bool = True


CASES = {
    "answer": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.ANSWER,
        ("www.shop.test. 60 A 127.0.0.80",),
        kept=("www.shop.test.",),
    ),
    "out-of-bailiwick answer records dropped": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.ANSWER,
        ("www.shop.test. 60 A 127.0.0.80", "www.bank.test. 60 A 6.6.6.6"),
        kept=("www.shop.test.",),
    ),
    "answer off the chain dropped": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.ANSWER,
        ("www.shop.test. 60 A 127.0.0.80", "mail.shop.test. 60 A 127.0.0.25"),
        kept=("www.shop.test.",),
    ),
    "non-authoritative answer": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.ANSWER,
        ("www.shop.test. 60 A 127.0.0.80",),
        aa=False,
        kept=("www.shop.test.",),
        authoritative=False,
    ),
    "cname chain in the zone": Case(
        "shop.test.",
        "web.shop.test.",
        Kind.ANSWER,
        ("web.shop.test. 60 CNAME www.shop.test.", "www.shop.test. 60 A 127.0.0.80"),
        kept=("web.shop.test.", "www.shop.test."),
    ),
    "cname out of the zone": Case(
        "shop.test.",
        "cdn.shop.test.",
        Kind.CNAME,
        ("cdn.shop.test. 60 CNAME edge.cdn.example.", "edge.cdn.example. 60 A 6.6.6.6"),
        kept=("cdn.shop.test.",),
        next_name="edge.cdn.example.",
    ),
    "cname to a missing name in the zone": Case(
        "shop.test.",
        "old.shop.test.",
        Kind.NXDOMAIN,
        ("old.shop.test. 60 CNAME gone.shop.test.",),
        (SOA,),
        rcode=3,
        kept=("old.shop.test.",),
        next_name="gone.shop.test.",
        soa=True,
    ),
    "name error": Case(
        "shop.test.",
        "nope.shop.test.",
        Kind.NXDOMAIN,
        auth=(SOA,),
        rcode=3,
        next_name="nope.shop.test.",
        soa=True,
    ),
    "no data": Case(
        "shop.test.", "www.shop.test.", Kind.NODATA, auth=(SOA,), next_name="www.shop.test.", soa=True
    ),
    "SOA of another zone ignored": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.NODATA,
        auth=("test. 300 SOA ns1.nic.test. host.test. 1 2 3 4 60",),
        next_name="www.shop.test.",
    ),
    "referral with glue, out-of-zone glue dropped": Case(
        "test.",
        "www.shop.test.",
        Kind.REFERRAL,
        auth=("shop.test. 86400 NS ns1.shop.test.", "shop.test. 86400 NS ns.hosting.example."),
        additional=("ns1.shop.test. 86400 A 127.0.0.10", "ns.hosting.example. 86400 A 6.6.6.6"),
        aa=False,
        referral="shop.test.",
        glue=("ns1.shop.test.",),
    ),
    "upward referral is lame": Case(
        "shop.test.", "www.shop.test.", Kind.LAME, auth=(". 86400 NS a.root-servers.test.",), aa=False
    ),
    "referral to the zone itself is no data": Case(
        "shop.test.",
        "www.shop.test.",
        Kind.NODATA,
        auth=("shop.test. 86400 NS ns1.shop.test.",),
        aa=False,
        next_name="www.shop.test.",
        authoritative=False,
    ),
    "recursive server without data is lame": Case(
        "shop.test.", "www.shop.test.", Kind.LAME, aa=False, ra=True
    ),
    "refused is lame": Case("shop.test.", "www.shop.test.", Kind.LAME, rcode=5),
    "server failure": Case("shop.test.", "www.shop.test.", Kind.SERVER_FAILURE, rcode=2),
    "formerr to EDNS": Case("shop.test.", "www.shop.test.", Kind.NO_EDNS, rcode=1),
    "formerr without EDNS is lame": Case("shop.test.", "www.shop.test.", Kind.LAME, rcode=1, edns=False),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_classify(case: Case) -> None:
    reply = dnslib.DNSRecord.question(case.qname, "A").reply(ra=int(case.ra), aa=int(case.aa))
    reply.header.rcode = case.rcode
    for section, texts in (
        (reply.add_answer, case.answer),
        (reply.add_auth, case.auth),
        (reply.add_ar, case.additional),
    ):
        for text in texts:
            section(*dnslib.RR.fromZone(text))
    c = classify(reply, name_of(case.zone), name_of(case.qname), A, edns_sent=case.edns)
    assert c.kind is case.kind
    assert [to_text(r.name) for r in c.answer] == list(case.kept)
    if case.next_name is not None:
        assert c.next_name is not None and to_text(c.next_name) == case.next_name
    assert (c.soa is not None) == case.soa
    assert (to_text(c.referral.zone) if c.referral else None) == case.referral
    assert [to_text(g.name) for g in (c.referral.glue if c.referral else ())] == list(case.glue)
    if case.kind in (Kind.ANSWER, Kind.NODATA, Kind.NXDOMAIN, Kind.CNAME):
        assert c.authoritative == case.authoritative
