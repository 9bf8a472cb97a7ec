"""A scripted DNS "Internet" for resolver machine tests: zones, servers and virtual time.

Strategy: each server address maps to a responder, a function from the query to what comes back
(a list of ``(delay, bytes, source)``; empty for a server that never answers).  :class:`Zone` is a
deliberately small authoritative server (exact matches, in-zone CNAMEs, referrals with glue,
NXDOMAIN/NODATA with the SOA) so tests read as zone files; scripted responders wrap it to lie,
spoof, truncate or stay silent.  :func:`run` drives a resolver machine to quiescence in virtual
time, recording every upstream query.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import dnslib

from netlab.proto.dns_resolve import Answer, Resolved, Resolver, Transport, UpstreamQuery
from netlab.proto.dns_rrset import Name, is_subdomain, name_of, to_text

Addr = tuple[str, int]
Delivery = tuple[float, bytes, Addr]
Responder = Callable[[dnslib.DNSRecord, Transport, Addr], list[Delivery]]
LATENCY = 0.01  # seconds, each way combined


class Zone:
    """One zone's records, answered the way an authoritative server does (RFC 1034 4.3.2)."""

    def __init__(self, apex: str, records: str) -> None:
        self.apex = name_of(apex)
        self.rrs = [rr for rr in dnslib.RR.fromZone(records)]
        self.soa = next(rr for rr in self.rrs if rr.rtype == dnslib.QTYPE.SOA)

    def _at(self, name: Name, rtype: int | None = None) -> list[dnslib.RR]:
        return [rr for rr in self.rrs if name_of(rr.rname) == name and (rtype is None or rr.rtype == rtype)]

    def _cut(self, name: Name) -> list[dnslib.RR]:
        # The highest delegation (NS below the apex) at or above ``name``.
        for i in range(len(name) - len(self.apex) - 1, -1, -1):
            ns = self._at(name[i:], dnslib.QTYPE.NS)
            if ns and name[i:] != self.apex:
                return ns
        return []

    def answer(self, query: dnslib.DNSRecord) -> dnslib.DNSRecord:
        reply = query.reply()
        reply.header.ra = 0
        reply.header.aa = 1
        q = query.q
        name = name_of(q.qname)
        for _ in range(8):
            cut = self._cut(name)
            if cut:
                reply.header.aa = 1 if reply.rr else 0
                for ns in cut:
                    reply.add_auth(ns)
                    target = name_of(ns.rdata.label)
                    if is_subdomain(target, self.apex):
                        for glue in self._at(target, dnslib.QTYPE.A):
                            reply.add_ar(glue)
                return reply
            exact = self._at(name, q.qtype)
            if exact:
                for rr in exact:
                    reply.add_answer(rr)
                return reply
            cname = self._at(name, dnslib.QTYPE.CNAME)
            if cname:
                reply.add_answer(cname[0])
                name = name_of(cname[0].rdata.label)
                if not is_subdomain(name, self.apex):
                    return reply
                continue
            break
        exists = any(is_subdomain(name_of(rr.rname), name) for rr in self.rrs)
        if not exists:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        reply.add_auth(self.soa)
        return reply


def soa(apex: str, minimum: int = 300, ttl: int = 3600) -> str:
    suffix = "" if apex == "." else apex
    return f"{apex} {ttl} SOA ns.{suffix or 'root.'} host.{suffix or 'root.'} 1 7200 900 86400 {minimum}"


def serve(*zones: Zone) -> Responder:
    """A well-behaved authoritative server for ``zones`` (REFUSED for other names)."""

    def respond(query: dnslib.DNSRecord, transport: Transport, server: Addr) -> list[Delivery]:
        name = name_of(query.q.qname)
        best = max((z for z in zones if is_subdomain(name, z.apex)), key=lambda z: len(z.apex), default=None)
        if best is None:
            reply = query.reply()
            reply.header.ra = 0
            reply.header.rcode = dnslib.RCODE.REFUSED
        else:
            reply = best.answer(query)
        return [(LATENCY, reply.pack(), server)]

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
