"""The resolver machine against liars, spoofers, silent and broken servers (virtual time)."""

from __future__ import annotations

import random

import dnslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.proto.dns_cache import Rank
from netlab.proto.dns_resolve import Answer, Transport
from netlab.proto.dns_rrset import group_rrsets, name_of
from tests.proto import dns_world as w
from tests.proto.dns_fakenet import LATENCY, Delivery, Responder, run, serve, silent
from tests.proto.test_dns_resolve import ask, rrs

NOERROR, NXDOMAIN, SERVFAIL = dnslib.RCODE.NOERROR, dnslib.RCODE.NXDOMAIN, dnslib.RCODE.SERVFAIL
A = dnslib.QTYPE.A


def _with(query: dnslib.DNSRecord, *records: str, section: str = "answer") -> dnslib.DNSRecord:
    reply = w.SHOP_ZONE.answer(query)
    for text in records:
        for rr in dnslib.RR.fromZone(text):
            {"answer": reply.add_answer, "auth": reply.add_auth, "ar": reply.add_ar}[section](rr)
    return reply


def test_out_of_bailiwick_records_are_never_cached() -> None:
    resolver, net = w.make()

    def poisoner(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = _with(query, "www.bank.test. 86400 A 6.6.6.6")
        for rr in dnslib.RR.fromZone(
            "bank.test. 86400 NS ns.evil.example.\nns.evil.example. 86400 A 6.6.6.6"
        ):
            reply.add_ar(rr)
        return [(LATENCY, reply.pack(), server)]

    net.servers[w.SHOP] = poisoner
    _, answer = ask(resolver, net, "www.shop.test.")
    assert rrs(answer.answer) == ["www.shop.test. 300 A 127.0.0.10", "www.shop.test. 300 A 127.0.0.11"]
    for name, rtype in [("www.bank.test.", A), ("ns.evil.example.", A), ("bank.test.", dnslib.QTYPE.NS)]:
        assert resolver.cache.rrset(name_of(name), rtype, 1.0) is None
    assert resolver.stats.bailiwick_dropped >= 1


def test_out_of_zone_glue_in_a_referral_is_ignored() -> None:
    resolver, net = w.make()
    good_test = net.servers[w.TEST]

    def test_server(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = dnslib.DNSRecord.parse(good_test(query, transport, server)[0][1])
        # "Glue" for the glueless delegation's server, which lives under example.: the test.
        # servers have no say over that name.
        reply.add_ar(*dnslib.RR.fromZone("ns.hosting.example. 86400 A 6.6.6.6"))
        return [(LATENCY, reply.pack(), server)]

    net.servers[w.TEST] = test_server
    _, answer = ask(resolver, net, "www.glueless.test.")
    assert rrs(answer.answer) == ["www.glueless.test. 3600 A 127.0.0.13"]
    assert "6.6.6.6" not in {s.server[0] for s in net.sent}
    cached = resolver.cache.rrset(name_of("ns.hosting.example."), A, 1.0)
    assert cached is not None
    assert cached.rrset.addresses() == [w.GLUELESS[0]]


def test_upward_referral_marks_the_server_lame() -> None:
    resolver, net = w.make(seed=2)

    def upward(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = query.reply()
        reply.header.aa = 0
        reply.add_auth(*dnslib.RR.fromZone(". 86400 NS a.root."))
        return [(LATENCY, reply.pack(), server)]

    net.servers[w.LAME] = upward
    _, answer = ask(resolver, net, "www.lame.test.")
    assert rrs(answer.answer) == ["www.lame.test. 3600 A 127.0.0.14"]
    assert not resolver.servers.usable(w.LAME, name_of("lame.test."), 1.0)  # type: ignore[union-attr]


def _scripted(reply_for: object) -> Responder:
    def respond(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = query.reply(ra=0, aa=0)
        reply_for(reply)  # type: ignore[operator]
        return [(LATENCY, reply.pack(), server)]

    return respond


def test_non_authoritative_answer_is_used_but_ranks_below_authoritative_data() -> None:
    resolver, net = w.make()
    net.servers[w.SHOP] = _scripted(
        lambda r: r.add_answer(*dnslib.RR.fromZone("www.shop.test. 60 A 10.0.0.1"))
    )
    _, answer = ask(resolver, net, "www.shop.test.")
    assert rrs(answer.answer) == ["www.shop.test. 60 A 10.0.0.1"]
    net.servers[w.SHOP] = serve(w.SHOP_ZONE)
    resolver.cache.store(
        next(iter(group_rrsets(dnslib.RR.fromZone("www.shop.test. 60 A 10.0.0.2")).values())), Rank.GLUE, 1.0
    )
    cached = resolver.cache.lookup(name_of("www.shop.test."), A, 1.0)
    assert cached is not None and cached.data is not None
    assert cached.data.rrset.addresses() == ["10.0.0.1"]  # glue does not replace an answer


def test_referral_to_the_zone_itself_is_no_data() -> None:
    resolver, net = w.make()
    net.servers[w.SHOP] = _scripted(
        lambda r: r.add_auth(*dnslib.RR.fromZone("shop.test. 3600 NS ns1.shop.test."))
    )
    _, answer = ask(resolver, net, "www.shop.test.")
    assert answer == Answer(NOERROR)
    assert resolver.stats.lame == 0


def test_recursive_server_in_place_of_an_authority_is_lame() -> None:
    resolver, net = w.make()

    def recursive(reply: dnslib.DNSRecord) -> None:
        reply.header.ra = 1

    net.servers[w.SHOP] = _scripted(recursive)
    _, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == SERVFAIL
    assert resolver.stats.lame >= 1


def test_spoofed_answers_are_ignored() -> None:
    resolver, net = w.make()

    def spoofed(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        forged = _with(query)
        forged.rr = []
        forged.add_answer(*dnslib.RR.fromZone("www.shop.test. 86400 A 6.6.6.6"))
        wrong_id = forged.pack()
        wrong_id = bytes([wrong_id[0] ^ 0x55]) + wrong_id[1:]
        other_question = dnslib.DNSRecord.question("www.bank.test.", "A").reply()
        other_question.header.id = query.header.id
        other_question.add_answer(*dnslib.RR.fromZone("www.bank.test. 86400 A 6.6.6.6"))
        return [
            (0.001, wrong_id, server),  # wrong ID
            (0.002, forged.pack(), (server[0], 5353)),  # right ID, wrong source port
            (0.003, forged.pack(), ("203.0.113.66", 53)),  # right ID, wrong source address
            (0.004, other_question.pack(), server),  # right ID, another question
            (0.005, b"\x12\x34garbage", server),
            (LATENCY, w.SHOP_ZONE.answer(query).pack(), server),  # the real answer
        ]

    net.servers[w.SHOP] = spoofed
    _, answer = ask(resolver, net, "www.shop.test.")
    assert rrs(answer.answer) == ["www.shop.test. 300 A 127.0.0.10", "www.shop.test. 300 A 127.0.0.11"]
    assert resolver.stats.mismatched == 5
    assert resolver.cache.rrset(name_of("www.bank.test."), A, 1.0) is None


def test_answer_after_the_timeout_is_late_and_ignored() -> None:
    resolver, net = w.make()
    slow = serve(w.SHOP_ZONE)
    answered: list[int] = []

    def sluggish(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        answered.append(query.header.id)
        delay = 5.0 if len(answered) == 1 else LATENCY  # the first one misses the 0.4 s timeout
        return [(delay, data, src) for _, data, src in slow(query, transport, server)]

    net.servers[w.SHOP] = sluggish
    at, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == NOERROR
    assert at == pytest.approx(3 * LATENCY + 0.4 + LATENCY)
    assert len(answered) == 2 and answered[0] != answered[1]  # the retry has a fresh ID
    assert resolver.stats.timeouts == 1


def test_truncated_answer_is_asked_again_over_tcp() -> None:
    resolver, net = w.make()

    def truncating(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = w.SHOP_ZONE.answer(query)
        if transport is Transport.UDP:
            reply.rr = []
            reply.header.tc = 1
        return [(LATENCY, reply.pack(), server)]

    net.servers[w.SHOP] = truncating
    _, answer = ask(resolver, net, "www.shop.test.")
    assert len(answer.answer) == 2
    assert [s.transport for s in net.sent if s.server == w.SHOP] == [Transport.UDP, Transport.TCP]


def test_server_rejecting_edns_is_asked_without_it() -> None:
    resolver, net = w.make()

    def old_server(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        if query.ar:
            reply = query.reply()
            reply.header.rcode = dnslib.RCODE.FORMERR
            return [(LATENCY, reply.pack(), server)]
        return [(LATENCY, w.SHOP_ZONE.answer(query).pack(), server)]

    net.servers[w.SHOP] = old_server
    _, answer = ask(resolver, net, "www.shop.test.")
    assert len(answer.answer) == 2
    assert not resolver.servers.edns(w.SHOP)  # type: ignore[union-attr]


def test_deadline_gives_servfail_on_time() -> None:
    resolver, net = w.make(deadline=2.0)
    net.servers[w.SHOP] = silent
    at, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == SERVFAIL
    assert at == pytest.approx(2.0)  # the third try (0.4 + 0.8 + 1.6 s) would end after it
    assert resolver.stats.deadline_expired == 1


def test_dead_server_is_skipped_for_a_while() -> None:
    resolver, net = w.make()
    net.servers[w.SHOP] = silent
    at, answer = ask(resolver, net, "www.shop.test.")
    assert answer.rcode == SERVFAIL
    assert at == pytest.approx(3 * LATENCY + 0.4 + 0.8 + 1.6)  # three tries with backoff
    net.sent.clear()
    at, answer = ask(resolver, net, "mail.shop.test.", now=10.0)
    assert (answer.rcode, at) == (SERVFAIL, 10.0)
    assert net.sent == []
    net.servers[w.SHOP] = serve(w.SHOP_ZONE)
    _, answer = ask(resolver, net, "mail.shop.test.", now=100.0)  # the hold is over
    assert answer.rcode == NOERROR


def test_minimisation_falls_back_to_the_full_name_on_a_false_nxdomain() -> None:
    resolver, net = w.make()

    def broken(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        reply = w.SHOP_ZONE.answer(query)
        if reply.header.rcode == NOERROR and not reply.rr:  # an empty non-terminal
            reply.header.rcode = NXDOMAIN
        return [(LATENCY, reply.pack(), server)]

    net.servers[w.SHOP] = broken
    _, answer = ask(resolver, net, "deep.a.b.c.shop.test.", "TXT")
    assert answer.rcode == NOERROR
    assert net.questions(w.SHOP) == [("c.shop.test.", "A"), ("deep.a.b.c.shop.test.", "TXT")]


def test_too_many_questions_in_flight_get_servfail_at_once() -> None:
    resolver, net = w.make(max_tasks=2, prime=False)
    answers, _ = run(resolver, net, [("a.shop.test.", "A"), ("b.shop.test.", "A"), ("c.shop.test.", "A")])
    assert sorted(a.rcode for _, a in answers.values()) == sorted([NXDOMAIN, NXDOMAIN, SERVFAIL])
    assert resolver.stats.overloaded >= 1


def _lossy(inner: Responder, rng: random.Random, loss: float) -> Responder:
    def respond(query: dnslib.DNSRecord, transport: Transport, server: tuple[str, int]) -> list[Delivery]:
        out = inner(query, transport, server)
        out = [d for d in out if rng.random() >= loss]
        return out * (2 if rng.random() < 0.1 else 1)  # and a duplicate now and then

    return respond


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    name=st.sampled_from(
        ["www.shop.test.", "www.alias.test.", "www.glueless.test.", "www.lame.test.", "nope.shop.test."]
    ),
)
def test_lossy_network_ends_with_the_right_answer_or_servfail_in_time(
    seed: int, loss: float, name: str
) -> None:
    resolver, net = w.make(seed=seed)
    rng = random.Random(seed)
    net.servers = {addr: _lossy(responder, rng, loss) for addr, responder in net.servers.items()}
    at, answer = ask(resolver, net, name)
    assert at <= resolver.settings.deadline + 1e-9
    assert len(net.sent) <= resolver.settings.max_upstream_queries
    expected = NXDOMAIN if name.startswith("nope") else NOERROR
    assert answer.rcode in (expected, SERVFAIL)
    if answer.rcode == NOERROR:
        assert answer.answer[-1].rtype == A
    if loss == 0.0:
        assert answer.rcode == expected
