"""The resolver machine against a scripted hierarchy, in virtual time (no sockets)."""

from __future__ import annotations

import dnslib
import pytest

from netlab.proto.dns_resolve import Answer, Resolver
from netlab.proto.dns_rrset import name_of
from tests.proto import dns_world as w
from tests.proto.dns_fakenet import LATENCY, FakeNet, run

NOERROR, NXDOMAIN, SERVFAIL = dnslib.RCODE.NOERROR, dnslib.RCODE.NXDOMAIN, dnslib.RCODE.SERVFAIL


def rrs(records: tuple[dnslib.RR, ...]) -> list[str]:
    """Records as ``name ttl type rdata``, sorted."""
    return sorted(f"{rr.rname} {rr.ttl} {dnslib.QTYPE.get(rr.rtype)} {rr.rdata}" for rr in records)


def ask(
    resolver: Resolver, net: FakeNet, qname: str, qtype: str = "A", now: float = 0.0
) -> tuple[float, Answer]:
    answers, _ = run(resolver, net, [(qname, qtype)], now=now)
    (only,) = answers.values()
    return only


def test_follows_referrals_from_the_root_with_minimised_names() -> None:
    resolver, net = w.make()
    at, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == NOERROR
    assert rrs(answer.answer) == ["www.shop.test. 300 A 127.0.0.10", "www.shop.test. 300 A 127.0.0.11"]
    # Priming, then one label more per zone cut (RFC 9156), type A for the minimised names.
    assert [(s.server, s.qname, s.qtype) for s in net.sent] == [
        (w.ROOT, ".", "NS"),
        (w.ROOT, "test.", "A"),
        (w.TEST, "shop.test.", "A"),
        (w.SHOP, "www.shop.test.", "A"),
    ]
    assert at == pytest.approx(4 * LATENCY)


def test_without_minimisation_every_server_sees_the_full_name() -> None:
    resolver, net = w.make(qname_minimisation=False)
    _, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == NOERROR
    assert net.questions() == [
        (".", "NS"),
        ("www.shop.test.", "A"),
        ("www.shop.test.", "A"),
        ("www.shop.test.", "A"),
    ]


def test_minimisation_walks_down_a_deep_name_inside_one_zone() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "deep.a.b.c.shop.test.", "TXT")
    assert rrs(answer.answer) == ['deep.a.b.c.shop.test. 60 TXT "deep"']
    assert net.questions(w.SHOP) == [
        ("c.shop.test.", "A"),
        ("b.c.shop.test.", "A"),
        ("a.b.c.shop.test.", "A"),
        ("deep.a.b.c.shop.test.", "TXT"),
    ]


def test_minimised_names_known_from_the_cache_are_not_asked_again() -> None:
    resolver, net = w.make()
    ask(resolver, net, "deep.a.b.c.shop.test.", "TXT")
    net.sent.clear()
    _, answer = ask(resolver, net, "other.a.b.c.shop.test.", now=1.0)
    assert answer.rcode == NXDOMAIN
    assert net.questions() == [("other.a.b.c.shop.test.", "A")]


def test_cached_delegations_skip_the_root_and_ttls_count_down() -> None:
    resolver, net = w.make()
    ask(resolver, net, "www.shop.test.")
    net.sent.clear()
    _, answer = ask(resolver, net, "mail.shop.test.", "MX", now=100.0)
    assert net.questions() == [("mail.shop.test.", "MX")]
    assert [s.server for s in net.sent] == [w.SHOP]
    assert rrs(answer.answer) == ["mail.shop.test. 3600 MX 10 mx.shop.test."]
    # Answered from the cache: no query, and the TTL is what is left of it.
    net.sent.clear()
    _, again = ask(resolver, net, "www.shop.test.", now=200.5)
    assert net.sent == []
    assert {rr.ttl for rr in again.answer} == {100}  # received at 0.04 s, rounded up


def test_expired_records_are_asked_for_again() -> None:
    resolver, net = w.make()
    ask(resolver, net, "www.shop.test.")
    net.sent.clear()
    _, answer = ask(resolver, net, "www.shop.test.", now=301.0)
    assert net.questions() == [("www.shop.test.", "A")]
    assert {rr.ttl for rr in answer.answer} == {300}


def test_glueless_delegation_resolves_the_name_server_first() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "www.glueless.test.")
    assert rrs(answer.answer) == ["www.glueless.test. 3600 A 127.0.0.13"]
    # The name server's address is looked up with its full name (it is no client's secret).
    assert [s.server for s in net.sent if s.qname == "ns.hosting.example."] == [w.ROOT, w.EXAMPLE, w.HOSTING]
    assert ("hosting.example.", "A") not in net.questions()
    assert net.sent[-1].server == w.GLUELESS


def test_glueless_delegation_beyond_the_depth_limit_fails() -> None:
    resolver, net = w.make(max_depth=0)
    _, answer = ask(resolver, net, "www.glueless.test.")
    assert answer.rcode == SERVFAIL
    assert w.GLUELESS not in [s.server for s in net.sent]


def test_cname_chain_across_zones() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "www.alias.test.")
    assert answer.rcode == NOERROR
    assert [str(rr.rname) for rr in answer.answer] == ["www.alias.test.", "www.shop.test.", "www.shop.test."]
    assert rrs(answer.answer)[0] == "www.alias.test. 120 CNAME www.shop.test."
    # The target lives in another zone: it was asked of that zone's server, not believed from ALIAS.
    assert ("www.shop.test.", "A") in net.questions(w.SHOP)


def test_cname_inside_one_zone_comes_in_one_answer() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "web.shop.test.")
    assert rrs(answer.answer) == [
        "web.shop.test. 600 CNAME www.shop.test.",
        "www.shop.test. 300 A 127.0.0.10",
        "www.shop.test. 300 A 127.0.0.11",
    ]
    assert net.questions(w.SHOP) == [("web.shop.test.", "A")]


def test_cname_loop_is_a_server_failure() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "loop1.alias.test.")
    assert answer.rcode == SERVFAIL
    assert len(net.sent) < 10


def test_negative_answers_are_cached_for_the_soa_minimum() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "nope.shop.test.")
    assert answer.rcode == NXDOMAIN
    assert rrs(answer.authority) == ["shop.test. 300 SOA ns.shop.test. host.shop.test. 1 7200 900 86400 300"]
    net.sent.clear()
    _, cached = ask(resolver, net, "nope.shop.test.", "MX", now=100.5)
    assert net.sent == []  # a name error covers every type (RFC 2308 section 5)
    assert cached.rcode == NXDOMAIN
    assert [rr.ttl for rr in cached.authority] == [200]
    _, after = ask(resolver, net, "nope.shop.test.", now=301.0)
    assert after.rcode == NXDOMAIN
    assert net.questions() == [("nope.shop.test.", "A")]


def test_nodata_is_cached_per_type() -> None:
    resolver, net = w.make()
    _, answer = ask(resolver, net, "www.shop.test.", "AAAA")
    assert (answer.rcode, answer.answer, len(answer.authority)) == (NOERROR, (), 1)
    net.sent.clear()
    ask(resolver, net, "www.shop.test.", "AAAA", now=10.0)
    assert net.sent == []
    ask(resolver, net, "www.shop.test.", "TXT", now=10.0)
    assert net.questions() == [("www.shop.test.", "TXT")]


def test_glue_is_never_given_out_as_an_answer() -> None:
    resolver, net = w.make()
    ask(resolver, net, "www.shop.test.")
    # The address of ns1.shop.test. is known, but only as glue from the test. servers.
    assert resolver.answer_from_cache(name_of("ns1.shop.test."), dnslib.QTYPE.A, 1.0) is None
    net.sent.clear()
    _, answer = ask(resolver, net, "ns1.shop.test.", now=1.0)
    assert net.questions() == [("ns1.shop.test.", "A")]
    assert [s.server for s in net.sent] == [w.SHOP]
    assert rrs(answer.answer) == [f"ns1.shop.test. 3600 A {w.SHOP[0]}"]


def test_coalesces_identical_questions_in_flight() -> None:
    resolver, net = w.make()
    answers, _ = run(resolver, net, [("www.shop.test.", "A")] * 3 + [("mail.shop.test.", "MX")])
    assert len(answers) == 4
    assert [a.rcode for _, a in answers.values()] == [NOERROR] * 4
    assert net.questions().count((".", "NS")) == 1  # one priming for all of them
    assert net.questions(w.SHOP).count(("www.shop.test.", "A")) == 1
    assert resolver.stats.coalesced >= 2


def test_lame_server_is_skipped_for_its_zone() -> None:
    resolver, net = w.make(seed=3)
    _, answer = ask(resolver, net, "www.lame.test.")
    assert rrs(answer.answer) == ["www.lame.test. 3600 A 127.0.0.14"]
    net.sent.clear()
    ask(resolver, net, "other.lame.test.", now=1.0)
    assert {s.server for s in net.sent} == {w.SHOP2}


def test_upstream_query_budget_caps_one_question() -> None:
    resolver, net = w.make(max_upstream_queries=3)
    _, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == SERVFAIL
    assert len(net.sent) == 3
    assert resolver.stats.budget_exhausted == 1


def test_answer_carries_no_out_of_zone_state() -> None:
    resolver, _ = w.make()
    assert resolver.answer_from_cache(name_of("www.shop.test."), dnslib.QTYPE.A, 0.0) is None


def test_flush_forgets_the_cache_and_the_servers() -> None:
    resolver, net = w.make()
    ask(resolver, net, "www.shop.test.")
    resolver.flush()
    net.sent.clear()
    ask(resolver, net, "www.shop.test.", now=1.0)
    assert net.questions()[0] == (".", "NS")  # primed again, from the root
    assert len(net.sent) == 4


def test_queries_are_encoded_as_dnslib_reads_them() -> None:
    from netlab.proto.dns_rrset import encode_query

    wire = encode_query(0x1234, name_of("www.shop.test."), dnslib.QTYPE.MX, edns_payload=1232)
    message = dnslib.DNSRecord.parse(wire)
    assert (message.header.id, message.header.rd, str(message.q.qname), message.q.qtype) == (
        0x1234,
        0,
        "www.shop.test.",
        dnslib.QTYPE.MX,
    )
    assert [(rr.rtype, rr.rclass) for rr in message.ar] == [(dnslib.QTYPE.OPT, 1232)]
    assert dnslib.DNSRecord.parse(encode_query(1, (), dnslib.QTYPE.NS)).ar == []
