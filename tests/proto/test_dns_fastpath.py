"""Replaying kept replies (netlab.proto.dns_fastpath): same answer as a fresh one, made the query's own."""

from __future__ import annotations

import struct

import pytest
from dnslib import DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.dns_auth import Authority
from netlab.proto.dns_fastpath import ReplyCache
from netlab.proto.dns_wire import Transport, check_query, encode_reply, parse_message_untrusted, reply_limit
from netlab.proto.dns_zone import parse_zone_text
from tests.proto.dns_packets import encode_name, header, opt_rr, query_bytes

ZONE = parse_zone_text(
    """\
$ORIGIN shop.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
ns1 A 127.0.0.10
www A 127.0.0.80
alias CNAME www
*.apps A 127.0.0.81
"""
)
AUTHORITY = Authority([ZONE])


def fresh(data: bytes, transport: Transport = Transport.UDP) -> bytes:
    """The reply the slow path gives."""
    message = parse_message_untrusted(data)
    _, edns = check_query(message)
    wire, _ = encode_reply(AUTHORITY.answer(message), limit=reply_limit(transport, edns), edns=edns)
    return wire


def served(cache: ReplyCache, data: bytes, transport: Transport = Transport.UDP) -> bytes:
    probe = cache.probe(data, transport)
    assert probe is not None
    kept = cache.replay(probe, data)
    if kept is not None:
        return kept
    wire = fresh(data, transport)
    cache.put(probe, wire)
    return wire


@pytest.mark.parametrize(
    "packet",
    [
        header(flags=0x8100) + encode_name("www.shop.test") + b"\x00\x01\x00\x01",  # a response
        header(flags=0x0900) + encode_name("www.shop.test") + b"\x00\x01\x00\x01",  # opcode 1
        header(qd=2) + encode_name("www.shop.test") + b"\x00\x01\x00\x01" * 2,
        header() + b"\xc0\x0c\x00\x01\x00\x01",  # a compressed question name
        header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        header() + encode_name("www.shop.test") + b"\x00\x01\x00",  # short
        header() + encode_name("www.shop.test") + b"\x00\x01\x00\x01x",  # trailing
        query_bytes("www.shop.test", edns=opt_rr(version=1)),
        query_bytes("www.shop.test", edns=opt_rr(options=b"\x00\x0a\x00\x08abc")),  # option overruns
        query_bytes("www.shop.test", edns=opt_rr())[:-1],
        header(ar=1) + encode_name("www.shop.test") + b"\x00\x01\x00\x01" + b"\x01x" + opt_rr()[1:],
    ],
)
def test_only_plain_queries_qualify(packet: bytes) -> None:
    assert ReplyCache().probe(packet, Transport.UDP) is None


def test_replay_is_the_query_own() -> None:
    cache = ReplyCache()
    first = served(cache, query_bytes("www.shop.test", id=1))
    assert cache.misses == 1
    second_query = bytearray(query_bytes("WwW.sHoP.TeSt", id=0xBEEF))
    second_query[2] &= 0xFE  # RD clear
    second_query[3] |= 0x10  # CD set
    second = served(cache, bytes(second_query))
    assert cache.hits == 1
    assert first != second
    parsed = DNSRecord.parse(second)
    assert parsed.header.id == 0xBEEF
    assert (parsed.header.rd, parsed.header.cd, parsed.header.aa) == (0, 1, 1)
    assert parsed.q.qname.label == (b"WwW", b"sHoP", b"TeSt")
    assert str(parsed.rr[0].rdata) == "127.0.0.80"


def test_the_key_keeps_apart_what_changes_the_reply() -> None:
    cache = ReplyCache()
    probes = {
        cache.probe(query_bytes("www.shop.test", 0x41), Transport.UDP),  # HTTPS...
        cache.probe(query_bytes("www.shop.test", 0x61), Transport.UDP),  # ...not a case-folded qtype
        cache.probe(query_bytes("www.shop.test"), Transport.UDP),
        cache.probe(query_bytes("www.shop.test"), Transport.TCP),
        cache.probe(query_bytes("www.shop.test", edns=opt_rr(udp=4096)), Transport.UDP),
        cache.probe(query_bytes("www.shop.test", edns=opt_rr(udp=700)), Transport.UDP),
        cache.probe(query_bytes("www.shop.test", edns=opt_rr(udp=4096, do=True)), Transport.UDP),
    }
    assert None not in probes
    assert len({p.key for p in probes if p is not None}) == 7
    same = {
        cache.probe(query_bytes("WWW.shop.test", edns=opt_rr(udp=4096)), Transport.UDP),
        cache.probe(
            query_bytes("www.shop.test", edns=opt_rr(udp=9000, options=b"\x00\x0a\x00\x08abcdefgh")),
            Transport.UDP,
        ),
    }
    assert len({p.key for p in same if p is not None}) == 1


def test_oldest_reply_is_forgotten_first() -> None:
    cache = ReplyCache(max_entries=2)
    for name in ("a", "b", "c"):
        served(cache, query_bytes(f"{name}.apps.shop.test"))
    assert len(cache) == 2
    served(cache, query_bytes("a.apps.shop.test"))
    assert cache.hits == 0


_names = st.sampled_from(["www", "alias", "nope", "x.apps", "ns1", ""]).map(
    lambda n: f"{n}.shop.test" if n else "shop.test"
)


@given(
    name=_names,
    qtype=st.sampled_from([1, 2, 5, 6, 15, 28]),
    flips=st.lists(st.booleans(), min_size=20, max_size=20),
    ids=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    udp=st.sampled_from([None, 512, 1232, 4096]),
    transport=st.sampled_from(list(Transport)),
)
def test_replay_matches_a_fresh_reply(
    name: str, qtype: int, flips: list[bool], ids: tuple[int, int], udp: int | None, transport: Transport
) -> None:
    spelled = "".join(c.upper() if flip else c for c, flip in zip(name, flips * 4, strict=False))
    edns = None if udp is None else opt_rr(udp=udp)
    cache = ReplyCache()
    served(cache, query_bytes(name, qtype, id=ids[0], edns=edns), transport)
    query = query_bytes(spelled, qtype, id=ids[1], edns=edns)
    replayed = served(cache, query, transport)
    assert cache.hits == 1
    expected = DNSRecord.parse(fresh(query, transport))
    got = DNSRecord.parse(replayed)
    # Names may be spelled as the query spelled them (compressed against the question): compare
    # case-folded, as DNS does.
    assert str(got).lower() == str(expected).lower()
    assert got.header.id == ids[1]
    assert got.q.qname.label == expected.q.qname.label
    assert struct.unpack("!H", replayed[2:4]) == struct.unpack("!H", fresh(query, transport)[2:4])
