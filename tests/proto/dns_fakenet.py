"""A scripted DNS "Internet" for resolver machine tests: zones, servers and virtual time.

Strategy: each server address maps to a responder, a function from the query to what comes back
(a list of ``(delay, bytes, source)``; empty for a server that never answers).  Zones are
written as master files so tests read as zone files; scripted responders wrap them to lie,
spoof, truncate or stay silent.  The zones are answered by the suite's own authoritative
logic (:mod:`netlab.proto.dns_auth`).  :func:`run` drives a resolver machine to quiescence in virtual
time, recording every upstream query.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import dnslib

from netlab.proto.dns_auth import Authority
from netlab.proto.dns_resolve import Answer, Resolved, Resolver, Transport, UpstreamQuery
from netlab.proto.dns_rrset import name_of, to_text
from netlab.proto.dns_zone import parse_zone_text

Addr = tuple[str, int]
Delivery = tuple[float, bytes, Addr]
Responder = Callable[[dnslib.DNSRecord, Transport, Addr], list[Delivery]]
LATENCY = 0.01  # seconds, each way combined


def soa(apex: str, minimum: int = 300, ttl: int = 3600) -> str:
    suffix = "" if apex == "." else apex
    return f"{apex} {ttl} SOA ns.{suffix or 'root.'} host.{suffix or 'root.'} 1 7200 900 86400 {minimum}"


def zone(apex: str, text: str) -> Authority:
    """An authoritative server holding one zone, given as master-file text."""
    return Authority([parse_zone_text(text, origin=apex)])


def serve(*zones: Authority) -> Responder:
    """A well-behaved authoritative server for ``zones`` (REFUSED for other names)."""
    authority = Authority([z for auth in zones for z in auth.zones.values()])

    def respond(query: dnslib.DNSRecord, transport: Transport, server: Addr) -> list[Delivery]:
        return [(LATENCY, authority.answer(query).pack(), server)]

    return respond


def silent(query: dnslib.DNSRecord, transport: Transport, server: Addr) -> list[Delivery]:
    return []


@dataclass
class Sent:
    at: float
    server: Addr
    qname: str
    qtype: str
    transport: Transport


@dataclass
class FakeNet:
    servers: dict[Addr, Responder]
    sent: list[Sent] = field(default_factory=list)

    def questions(self, server: Addr | None = None) -> list[tuple[str, str]]:
        return [(s.qname, s.qtype) for s in self.sent if server is None or s.server == server]


def run(
    resolver: Resolver,
    net: FakeNet,
    questions: Iterable[tuple[str, str]] = (),
    *,
    now: float = 0.0,
    until: float = 1e9,
) -> tuple[dict[int, tuple[float, Answer]], float]:
    """Submit ``questions`` at ``now`` and run until nothing is pending (or ``until``).

    Returns the answers by ticket with the time each came, and the final time.
    """
    answers: dict[int, tuple[float, Answer]] = {}
    pending: list[tuple[float, int, int, bytes, Addr]] = []
    order = itertools.count()
    for qname, qtype in questions:
        resolver.submit(name_of(qname), getattr(dnslib.QTYPE, qtype), now)
    while True:
        for out in resolver.datagrams_to_send(now):
            _send(net, out, now, pending, order)
        while (event := resolver.next_event()) is not None:
            if isinstance(event, Resolved):
                answers[event.ticket] = (now, event.answer)
        timer = resolver.get_timer()
        arrival = pending[0][0] if pending else None
        candidates = [t for t in (timer, arrival) if t is not None]
        if not candidates or min(candidates) > until:
            return answers, now
        now = max(now, min(candidates))
        if arrival is not None and arrival <= now:
            _, _, exchange, data, source = heapq.heappop(pending)
            resolver.receive_datagram(data, source, now, exchange=exchange)
        else:
            resolver.handle_timer(now)


def _send(
    net: FakeNet,
    out: UpstreamQuery,
    now: float,
    pending: list[tuple[float, int, int, bytes, Addr]],
    order: Iterator[int],
) -> None:
    query = dnslib.DNSRecord.parse(out.wire)
    net.sent.append(
        Sent(now, out.server, to_text(name_of(query.q.qname)), dnslib.QTYPE.get(query.q.qtype), out.transport)
    )
    responder = net.servers.get(out.server, silent)
    for delay, data, source in responder(query, out.transport, out.server):
        heapq.heappush(pending, (now + delay, next(order), out.exchange, data, source))
