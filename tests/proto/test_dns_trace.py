"""The +trace iteration machine (netlab.proto.dns_trace) against the lab's zones, in virtual time."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from netlab.lab import SERVERS, load_authorities, root_hints_path
from netlab.proto.dns_auth import Authority
from netlab.proto.dns_trace import Done, Failed, Reply, TimedOut, Trace, TraceEvent, parse_root_hints
from netlab.proto.dns_wire import Transport, check_query, encode_reply, parse_message_untrusted, reply_limit

HINTS = [("a.root-servers.test", "127.0.0.2")]
PORT = 5300
Tamper = Callable[[bytes, tuple[str, int]], list[tuple[bytes, tuple[str, int]]]]


@pytest.fixture(scope="module")
def lab() -> dict[str, Authority | None]:
    authorities: dict[str, Authority | None] = dict(load_authorities())
    for spec in SERVERS:
        if spec.silent:
            authorities[spec.address] = None
    return authorities


def run(
    trace: Trace, servers: dict[str, Authority | None], tamper: Tamper | None = None
) -> tuple[list[TraceEvent], float]:
    """Drive ``trace`` against the zones, one step at a time; returns its events and the end time."""
    now = 0.0
    events: list[TraceEvent] = []
    inbox: list[tuple[bytes, tuple[str, int]]] = []
    for _ in range(500):
        for out in trace.datagrams_to_send(now):
            assert out.server[1] == PORT
            authority = servers.get(out.server[0])
            if authority is None:
                continue  # nothing answers there
            query = parse_message_untrusted(out.data)
            assert query.header.rd == 0
            _, edns = check_query(query)
            transport = Transport.TCP if out.tcp else Transport.UDP
            wire, _ = encode_reply(authority.answer(query), limit=reply_limit(transport, edns), edns=edns)
            inbox += tamper(wire, out.server) if tamper else [(wire, out.server)]
        while (event := trace.next_event()) is not None:
            events.append(event)
        if trace.finished:
            return events, now
        if inbox:
            now += 0.001
            data, server = inbox.pop(0)
            trace.receive_datagram(data, server, now)
        else:
            timer = trace.get_timer()
            assert timer is not None
            now = timer
            trace.handle_timer(now)
        while (event := trace.next_event()) is not None:
            events.append(event)
        if trace.finished:
            return events, now
    raise AssertionError("the trace did not finish")


def steps(events: list[TraceEvent]) -> list[str]:
    """Each reply as 'server-name: what it said'."""
    out = []
    for e in events:
        if isinstance(e, Reply):
            m = e.message
            said = (
                "truncated"
                if m.header.tc
                else f"answer {len(m.rr)}"
                if m.rr
                else f"referral {m.auth[0].rname}"
                if m.auth and m.auth[0].rtype == QTYPE.NS
                else f"rcode {m.header.rcode}"
            )
            out.append(f"{'  ' * e.depth}{e.server_name}: {said}{' tcp' if e.tcp else ''}")
        elif isinstance(e, TimedOut):
            out.append(f"{'  ' * e.depth}{e.server_name}: timeout")
    return out


def trace_of(name: str, qtype: str = "A", seed: int = 1, **kwargs: int) -> Trace:
    return Trace(name, getattr(QTYPE, qtype), HINTS, port=PORT, rng=random.Random(seed), **kwargs)


def test_down_from_the_root(lab: dict[str, Authority | None]) -> None:
    events, _ = run(trace_of("www.shop.test"), lab)
    assert steps(events) == [
        "a.root-servers.test: answer 1",  # priming
        "a.root-servers.test: referral test.",
        "ns1.nic.test: referral shop.test.",
        "ns1.shop.test: answer 1",
    ]
    done = events[-1]
    assert isinstance(done, Done)
    assert str(done.message.rr[0].rdata) == "127.0.0.80"


def test_glueless_delegation_is_looked_up_first(lab: dict[str, Authority | None]) -> None:
    events, _ = run(trace_of("www.beta.test"), lab)
    assert steps(events) == [
        "a.root-servers.test: answer 1",
        "a.root-servers.test: referral test.",
        "ns1.nic.test: referral beta.test.",
        "  a.root-servers.test: referral example.",
        "  ns1.nic.example: answer 1",
        "ns.beta-dns.example: answer 1",
    ]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.message.rr[0].rtype == QTYPE.CNAME  # shown, not followed, as dig +trace does


def test_truncated_answer_is_asked_again_over_tcp(lab: dict[str, Authority | None]) -> None:
    events, _ = run(trace_of("big.example", "TXT"), lab)
    assert steps(events)[-2:] == ["ns1.nic.example: truncated", "ns1.nic.example: answer 20 tcp"]
    assert isinstance(events[-1], Done)


def test_nxdomain_ends_the_trace(lab: dict[str, Authority | None]) -> None:
    events, _ = run(trace_of("nope.shop.test"), lab)
    done = events[-1]
    assert isinstance(done, Done)
    assert done.message.header.rcode == 3


@pytest.mark.parametrize(
    ("name", "last"),
    [
        ("www.lame.test", "ns1.lame.test: rcode 5"),
        ("www.stale.test", "ns1.nic.test: referral stale.test."),
        ("www.dead.test", "ns1.dead.test: timeout"),
    ],
)
def test_broken_delegations_fail(lab: dict[str, Authority | None], name: str, last: str) -> None:
    events, _ = run(trace_of(name), lab)
    assert steps(events)[-1] == last
    assert isinstance(events[-1], Failed)


def test_dead_server_costs_one_timeout(lab: dict[str, Authority | None]) -> None:
    for seed in range(6):  # whichever of the two it asks first, it gets there
        events, end = run(trace_of("www.backup.test", seed=seed, timeout=2), lab)
        assert isinstance(events[-1], Done)
        timeouts = [e for e in events if isinstance(e, TimedOut)]
        assert len(timeouts) in (0, 1)
        assert end == pytest.approx(2.0 * len(timeouts), abs=0.1)


def test_replies_that_do_not_match_are_ignored(lab: dict[str, Authority | None]) -> None:
    def spoof(wire: bytes, server: tuple[str, int]) -> list[tuple[bytes, tuple[str, int]]]:
        good = DNSRecord.parse(wire)
        wrong_id = DNSRecord.parse(wire)
        wrong_id.header.id ^= 1
        wrong_question = DNSRecord.question("evil.test")
        wrong_question.header.id, wrong_question.header.qr = good.header.id, 1
        wrong_question.add_answer(RR("evil.test", QTYPE.A, rdata=A("6.6.6.6")))
        return [
            (bytes(wrong_id.pack()), server),
            (bytes(wrong_question.pack()), server),
            (wire, ("127.0.0.99", server[1])),  # from elsewhere
            (b"\x00\x01garbage", server),
            (wire, server),
        ]

    events, _ = run(trace_of("www.shop.test"), lab, tamper=spoof)
    assert len(steps(events)) == 4
    done = events[-1]
    assert isinstance(done, Done)
    assert str(done.message.rr[0].rdata) == "127.0.0.80"


def test_out_of_bailiwick_glue_is_not_believed(lab: dict[str, Authority | None]) -> None:
    def poison(wire: bytes, server: tuple[str, int]) -> list[tuple[bytes, tuple[str, int]]]:
        reply = DNSRecord.parse(wire)
        if server[0] == "127.0.0.3" and reply.auth and str(reply.auth[0].rname) == "beta.test.":
            # The test. server has no business giving addresses under example.
            reply.add_ar(RR("ns.beta-dns.example", QTYPE.A, rdata=A("127.0.0.66"), ttl=60))
        return [(bytes(reply.pack()), server)]

    events, _ = run(trace_of("www.beta.test"), lab, tamper=poison)
    assert "  ns1.nic.example: answer 1" in steps(events)  # looked up, not taken from the glue
    assert isinstance(events[-1], Done)


def test_query_budget(lab: dict[str, Authority | None]) -> None:
    events, _ = run(trace_of("www.shop.test", max_queries=2), lab)
    last = events[-1]
    assert isinstance(last, Failed)
    assert "2 queries" in last.reason


def test_root_hints_file() -> None:
    assert parse_root_hints(root_hints_path().read_text()) == HINTS
    with pytest.raises(ValueError, match="no root server"):
        parse_root_hints("; nothing here\n")
