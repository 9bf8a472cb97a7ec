"""Zones and authoritative answers (netlab.proto.dns_zone, netlab.proto.dns_auth), as tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from dnslib import QTYPE, DNSLabel, DNSQuestion, DNSRecord

from netlab.proto.dns_auth import MAX_CHAIN, Authority
from netlab.proto.dns_zone import ZoneError, origin_from_filename, parse_zone_text

SHOP = """\
$ORIGIN shop.test.
$TTL 300
@       IN SOA ns1 hostmaster (
                2024010101 ; serial
                3600 600 86400
                60 )       ; minimum: negative answers live 60 s
        NS      ns1
        NS      ns.elsewhere.example.
        MX      10 mail
        MX      20 mail.alpha.test.
        TXT     "v=spf1 -all"
ns1     A       127.0.0.10
mail    A       127.0.0.25
        AAAA    ::1
www     A       127.0.0.80
        AAAA    ::1
static  CNAME   www
alias   CNAME   static
cdn     CNAME   edge.cdn.example.
away    CNAME   www.elsewhere.example.
broken  CNAME   missing.www
loop1   CNAME   loop2
loop2   CNAME   loop1
_http._tcp SRV  0 5 80 www
*.apps  A       127.0.0.81
*.wild  CNAME   www
deep.ent A      127.0.0.82
*       TXT     "catch-all"
sub     NS      ns1.sub
        NS      ns.elsewhere.example.
ns1.sub A       127.0.0.12
glueless NS     ns.elsewhere.example.
80.rev  PTR     www.shop.test.
"""

CDN = """\
$ORIGIN cdn.example.
@    3600 IN SOA ns hostmaster 1 3600 600 86400 300
     3600 NS ns
ns   A 127.0.0.13
edge CNAME edge1
edge1 A 127.0.0.80
"""


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority([parse_zone_text(SHOP), parse_zone_text(CDN)])


@dataclass
class Case:
    qname: str
    qtype: str
    rcode: int = 0
    aa: int = 1
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)


CASES = {
    "A": Case("www.shop.test", "A", answer=["www.shop.test. A 127.0.0.80"]),
    "AAAA": Case("www.shop.test", "AAAA", answer=["www.shop.test. AAAA ::1"]),
    "TXT": Case("shop.test", "TXT", answer=['shop.test. TXT "v=spf1 -all"']),
    "SOA": Case(
        "shop.test",
        "SOA",
        answer=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "PTR": Case("80.rev.shop.test", "PTR", answer=["80.rev.shop.test. PTR www.shop.test."]),
    "MX with in-zone addresses": Case(
        "shop.test",
        "MX",
        answer=["shop.test. MX 10 mail.shop.test.", "shop.test. MX 20 mail.alpha.test."],
        additional=["mail.shop.test. A 127.0.0.25", "mail.shop.test. AAAA ::1"],
    ),
    "NS at the apex": Case(
        "shop.test",
        "NS",
        answer=["shop.test. NS ns1.shop.test.", "shop.test. NS ns.elsewhere.example."],
        additional=["ns1.shop.test. A 127.0.0.10"],
    ),
    "SRV": Case(
        "_http._tcp.shop.test",
        "SRV",
        answer=["_http._tcp.shop.test. SRV 0 5 80 www.shop.test."],
        additional=["www.shop.test. A 127.0.0.80", "www.shop.test. AAAA ::1"],
    ),
    "CNAME chain in the zone": Case(
        "alias.shop.test",
        "A",
        answer=[
            "alias.shop.test. CNAME static.shop.test.",
            "static.shop.test. CNAME www.shop.test.",
            "www.shop.test. A 127.0.0.80",
        ],
    ),
    "CNAME asked for": Case("static.shop.test", "CNAME", answer=["static.shop.test. CNAME www.shop.test."]),
    "CNAME chain across our zones": Case(
        "cdn.shop.test",
        "A",
        answer=[
            "cdn.shop.test. CNAME edge.cdn.example.",
            "edge.cdn.example. CNAME edge1.cdn.example.",
            "edge1.cdn.example. A 127.0.0.80",
        ],
    ),
    "CNAME out of our zones": Case(
        "away.shop.test", "A", answer=["away.shop.test. CNAME www.elsewhere.example."]
    ),
    "CNAME to nothing": Case(
        "broken.shop.test",
        "A",
        rcode=3,
        answer=["broken.shop.test. CNAME missing.www.shop.test."],
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "CNAME loop": Case(
        "loop1.shop.test",
        "A",
        answer=["loop1.shop.test. CNAME loop2.shop.test.", "loop2.shop.test. CNAME loop1.shop.test."],
    ),
    "NODATA": Case(
        "www.shop.test",
        "MX",
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "NXDOMAIN under a name without wildcard": Case(
        "nope.www.shop.test",
        "A",
        rcode=3,
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "referral with glue": Case(
        "host.sub.shop.test",
        "A",
        aa=0,
        authority=["sub.shop.test. NS ns1.sub.shop.test.", "sub.shop.test. NS ns.elsewhere.example."],
        additional=["ns1.sub.shop.test. A 127.0.0.12"],
    ),
    "referral for the cut itself": Case(
        "sub.shop.test",
        "NS",
        aa=0,
        authority=["sub.shop.test. NS ns1.sub.shop.test.", "sub.shop.test. NS ns.elsewhere.example."],
        additional=["ns1.sub.shop.test. A 127.0.0.12"],
    ),
    "glue is not an answer": Case(
        "ns1.sub.shop.test",
        "A",
        aa=0,
        authority=["sub.shop.test. NS ns1.sub.shop.test.", "sub.shop.test. NS ns.elsewhere.example."],
        additional=["ns1.sub.shop.test. A 127.0.0.12"],
    ),
    "glueless referral": Case(
        "x.glueless.shop.test", "A", aa=0, authority=["glueless.shop.test. NS ns.elsewhere.example."]
    ),
    "DS at a cut comes from the parent": Case(
        "sub.shop.test",
        "DS",
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "wildcard": Case("anything.apps.shop.test", "A", answer=["anything.apps.shop.test. A 127.0.0.81"]),
    "wildcard, two labels deep": Case("a.b.apps.shop.test", "A", answer=["a.b.apps.shop.test. A 127.0.0.81"]),
    "wildcard NODATA": Case(
        "anything.apps.shop.test",
        "MX",
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "wildcard CNAME": Case(
        "x.wild.shop.test",
        "A",
        answer=["x.wild.shop.test. CNAME www.shop.test.", "www.shop.test. A 127.0.0.80"],
    ),
    "the wildcard's own name": Case("*.apps.shop.test", "A", answer=["*.apps.shop.test. A 127.0.0.81"]),
    "apex wildcard": Case("other.shop.test", "TXT", answer=['other.shop.test. TXT "catch-all"']),
    "empty non-terminal is NODATA, not the wildcard": Case(
        "ent.shop.test",
        "TXT",
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "below an empty non-terminal the wildcard above does not apply": Case(
        "x.ent.shop.test",
        "TXT",
        rcode=3,
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "an existing name is not a wildcard match": Case(
        "www.shop.test",
        "TXT",
        authority=["shop.test. SOA ns1.shop.test. hostmaster.shop.test. 2024010101 3600 600 86400 60"],
    ),
    "case-insensitive": Case("WWW.Shop.TEST", "A", answer=["www.shop.test. A 127.0.0.80"]),
    "ANY": Case("www.shop.test", "ANY", answer=["www.shop.test. A 127.0.0.80", "www.shop.test. AAAA ::1"]),
    "outside our zones": Case("www.example", "A", rcode=5, aa=0),
    "the parent of our zone": Case("test", "NS", rcode=5, aa=0),
    "zone transfer": Case("shop.test", "AXFR", rcode=5, aa=0),
    "MAILB": Case("shop.test", "TYPE253", rcode=4, aa=0),
}


def _rr_text(rr: object) -> str:
    parts = str(rr).split(None, 4)
    return f"{parts[0]} {parts[3]} {parts[4]}".strip()


def _answer(authority: Authority, qname: str, qtype: str, qclass: int = 1) -> DNSRecord:
    query = DNSRecord(q=DNSQuestion(qname, getattr(QTYPE, qtype), qclass))
    return authority.answer(query)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_answers(authority: Authority, case: Case) -> None:
    reply = _answer(authority, case.qname, case.qtype)
    assert reply.header.rcode == case.rcode
    assert reply.header.aa == case.aa
    assert reply.header.qr == 1
    assert reply.q.qname.label == DNSLabel(case.qname).label  # the question as asked, case and all
    assert [_rr_text(rr) for rr in reply.rr] == case.answer
    assert [_rr_text(rr) for rr in reply.auth] == case.authority
    assert [_rr_text(rr) for rr in reply.ar] == case.additional


def test_priming_answer_carries_glue_from_below_a_cut() -> None:
    # RFC 8109 section 3.2: the root's own name server is named under a TLD it delegates.
    root = parse_zone_text(
        "$ORIGIN .\n$TTL 60\n@ SOA a.root.test. h. 1 1 1 1 1\n@ NS a.root.test.\n"
        "test. NS ns.test.\na.root.test. A 127.0.0.2\nns.test. A 127.0.0.3\n"
    )
    reply = _answer(Authority([root]), ".", "NS")
    assert reply.header.aa == 1
    assert [_rr_text(rr) for rr in reply.rr] == [". NS a.root.test."]
    assert [_rr_text(rr) for rr in reply.ar] == ["a.root.test. A 127.0.0.2"]
    # ...but an MX target below a cut gets no glue: that address is the child's to give.
    assert _answer(Authority([root]), "a.root.test", "A").header.aa == 0


def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum(authority: Authority) -> None:
    assert _answer(authority, "nope.shop.test", "A").auth[0].ttl == 60  # SOA TTL 300, minimum 60
    assert _answer(authority, "nope.cdn.example", "A").auth[0].ttl == 300  # SOA TTL 3600, minimum 300


def test_other_classes_are_refused(authority: Authority) -> None:
    assert _answer(authority, "version.bind", "TXT", qclass=3).header.rcode == 5


def test_chain_length_is_bounded() -> None:
    lines = [f"c{i} CNAME c{i + 1}" for i in range(40)]
    zone = parse_zone_text(
        "$ORIGIN long.test.\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 127.0.0.1\n" + "\n".join(lines)
    )
    reply = _answer(Authority([zone]), "c0.long.test", "A")
    assert len(reply.rr) == MAX_CHAIN + 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("$ORIGIN z.test.\n$TTL 60\n@ NS ns\nns A 127.0.0.1\n", "SOA"),
        ("$ORIGIN z.test.\n$TTL 60\n@ SOA ns h 1 1 1 1 1\nns A 127.0.0.1\n", "no NS"),
        ("$ORIGIN z.test.\n$TTL 60\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nx CNAME y\nx TXT hi\n", "CNAME"),
        ("$TTL 60\n@ SOA ns h 1 1 1 1 1\n", "origin"),
        ("$ORIGIN z.test.\n$TTL 60\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nx A not-an-address\n", "z.zone"),
    ],
)
def test_bad_zones(text: str, error: str) -> None:
    with pytest.raises(ZoneError, match=error):
        parse_zone_text(text, filename="z.zone")


def test_a_zone_is_loaded_once() -> None:
    with pytest.raises(ZoneError, match="twice"):
        Authority([parse_zone_text(CDN), parse_zone_text(CDN)])


def test_origin_from_filename() -> None:
    assert origin_from_filename("zones/alpha.test.zone") == "alpha.test."
    assert origin_from_filename("root.zone") == "."
    assert parse_zone_text("$TTL 60\n@ SOA ns h 1 1 1 1 1\n@ NS ns\n", origin="x.test.").origin == DNSLabel(
        "x.test"
    )
