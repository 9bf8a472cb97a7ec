"""Iterative resolution from the root hints, one query at a time, as ``dig +trace`` does it.

Strategy: a datagram/timer machine (the suite's shape, after aioquic): ``datagrams_to_send(now)``
gives the queries to send (each an :class:`Outgoing`: octets, server, and whether over TCP),
``receive_datagram(data, server, now)`` takes what came back, ``get_timer``/``handle_timer``
drive timeouts, and ``next_event`` reports every reply (:class:`Reply`), timeout, and the end
(:class:`Done` or :class:`Failed`).  One query is outstanding at a time, so the trace reads in
order.

It starts by priming (RFC 8109): ``. NS`` to a hinted root server, whose answer names the root
servers and their addresses.  Then it asks, without recursion (RD clear), the servers of the
closest zone known so far:

* a **referral** (NS records for a zone below the current one and above the name, not
  authoritative) moves one zone down; addresses come from glue, and only from glue inside the
  zone of the server that gave it (RFC 5452 section 6 calls anything else out-of-bailiwick and
  a resolver must not believe it);
* a name server named without glue (a glueless delegation) is looked up first, in a nested
  lookup from the root, at most ``max_depth`` deep;
* an **answer** (or NXDOMAIN, or an authoritative NODATA) ends the trace (``Done``); a CNAME is
  shown, not followed, as dig shows it;
* anything else (REFUSED, SERVFAIL, a referral upwards or sideways: a lame server) and timeouts
  move on to the zone's next server; TC moves the same question to TCP.

A reply counts only if it comes from the server asked, carries the ID sent (random, from the
``random.Random`` given) and repeats the question.  The total number of queries is bounded.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.rdatatype
import dns.zone
from dnslib import EDNS0, QTYPE, DNSLabel, DNSQuestion, DNSRecord

from netlab.proto.dns_wire import (
    DEFAULT_UDP_PAYLOAD,
    Rcode,
    RemoteProtocolError,
    name_key,
    parse_message_untrusted,
)

__all__ = [
    "Done",
    "Failed",
    "Outgoing",
    "Reply",
    "TimedOut",
    "Trace",
    "TraceEvent",
    "parse_root_hints",
]

Addr = tuple[str, int]


@dataclass(frozen=True)
class Outgoing:
    data: bytes
    server: Addr
    tcp: bool = False


@dataclass(frozen=True)
class Reply:
    """A reply accepted from ``server`` (named ``server_name``); ``depth`` > 0 inside a nested
    lookup of a name server's address."""

    message: DNSRecord
    size: int
    server: Addr
    server_name: str
    rtt: float
    tcp: bool
    depth: int


@dataclass(frozen=True)
class TimedOut:
    server: Addr
    server_name: str
    depth: int


@dataclass(frozen=True)
class Done:
    """The trace ended with this reply: an answer, NXDOMAIN or NODATA."""

    message: DNSRecord


@dataclass(frozen=True)
class Failed:
    reason: str


TraceEvent = Reply | TimedOut | Done | Failed


class _State(enum.Enum):
    READY = "ready"  # the next query is to be sent
    WAITING = "waiting"  # a query is outstanding
    FINISHED = "finished"


@dataclass
class _Lookup:
    """One name being resolved: the question, the zone reached, and the zone's servers."""

    qname: DNSLabel
    qtype: int
    zone: DNSLabel
    servers: list[tuple[str, str | None]]  # (name, address or None until looked up)
    depth: int
    tried: set[str] = field(default_factory=set)  # addresses asked in this zone
    looked_up: set[str] = field(default_factory=set)  # server names already chased


@dataclass
class _Pending:
    lookup: _Lookup
    server: Addr
    server_name: str
    message_id: int
    tcp: bool
    sent: float
    data: bytes


def parse_root_hints(text: str) -> list[tuple[str, str]]:
    """``(name, address)`` for each root server in a hints file (the format of named.root).

    Raises:
        ValueError: the text does not parse, or names no root server with an address.
    """
    try:
        zone = dns.zone.from_text(text, origin=".", relativize=False, check_origin=False)
    except dns.exception.DNSException as exc:
        raise ValueError(f"root hints: {exc}") from None
    hints = []
    root = zone.get_rdataset(".", dns.rdatatype.NS)
    for ns in root or ():
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            for address in zone.get_rdataset(ns.target, rdtype) or ():
                hints.append((ns.target.to_text(omit_final_dot=True), address.address))
    if not hints:
        raise ValueError("root hints name no root server with an address")
    return hints


class Trace:
    """Follow ``qname``/``qtype`` down from the root; see the module docstring."""

    def __init__(
        self,
        qname: str,
        qtype: int,
        hints: Sequence[tuple[str, str]],
        *,
        port: int = 53,
        rng: random.Random,
        timeout: float = 2.0,
        max_queries: int = 64,
        max_depth: int = 3,
        edns: bool = True,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.max_queries = max_queries
        self.max_depth = max_depth
        self.edns = edns
        self._rng = rng
        self._qname = DNSLabel(qname)
        self._qtype = qtype
        self._hints = [(name, address) for name, address in hints]
        self._roots = list(self._hints)
        # Priming comes first (RFC 8109): ". NS" at depth 0 then the real question.
        self._stack = [_Lookup(DNSLabel("."), QTYPE.NS, DNSLabel("."), list(self._hints), 0)]
        self._priming = True
        self._pending: _Pending | None = None
        self._outbox: list[Outgoing] = []
        self._events: list[TraceEvent] = []
        self._state = _State.READY
        self.queries = 0

    @property
    def finished(self) -> bool:
        return self._state is _State.FINISHED

    # -- the machine interface -----------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[Outgoing]:
        """The next query, if one is due (at most one is outstanding)."""
        if self._state is _State.READY:
            self._next_query(now)
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._pending is None:
            return None
        return self._pending.sent + self.timeout

    def handle_timer(self, now: float) -> None:
        pending = self._pending
        if pending is None or now < pending.sent + self.timeout:
            return
        self._events.append(TimedOut(pending.server, pending.server_name, pending.lookup.depth))
        self._pending = None
        self._state = _State.READY

    def next_event(self) -> TraceEvent | None:
        return self._events.pop(0) if self._events else None

    def receive_datagram(self, data: bytes, server: Addr, now: float) -> None:
        """A reply from ``server``; anything that does not match the outstanding query is ignored."""
        pending = self._pending
        if pending is None or server != pending.server:
            return
        try:
            message = parse_message_untrusted(data)
        except RemoteProtocolError:
            return
        question = pending.lookup
        if (
            message.header.id != pending.message_id
            or not message.header.qr
            or len(message.questions) != 1
            or name_key(message.q.qname) != name_key(question.qname)
            or message.q.qtype != question.qtype
        ):
            return  # not the reply to our query: maybe spoofed, maybe late
        self._pending = None
        self._state = _State.READY
        self._events.append(
            Reply(
                message,
                len(data),
                server,
                pending.server_name,
                now - pending.sent,
                pending.tcp,
                question.depth,
            )
        )
        if message.header.tc and not pending.tcp:
            # RFC 7766 section 5: the whole answer over TCP, from the same server.
            self._send(question, server, pending.server_name, now, tcp=True)
            return
        self._handle_reply(question, message)

    # -- decisions -----------------------------------------------------------------------------

    def _handle_reply(self, lookup: _Lookup, message: DNSRecord) -> None:
        rcode = message.header.rcode
        if rcode == Rcode.NXDOMAIN or message.rr or (rcode == Rcode.NOERROR and message.header.aa):
            self._finish_lookup(lookup, message)
            return
        if rcode == Rcode.NOERROR:
            cut = _referral(message, lookup)
            if cut is not None:
                zone, servers = cut
                lookup.zone, lookup.servers, lookup.tried, lookup.looked_up = zone, servers, set(), set()
                return
        # REFUSED, SERVFAIL, or an upward or sideways referral: a lame server.  Try the next.

    def _finish_lookup(self, lookup: _Lookup, message: DNSRecord) -> None:
        self._stack.pop()
        if self._priming:
            self._priming = False
            primed = _referral(message, lookup, priming=True)
            if primed is not None and any(address for _, address in primed[1]):
                self._roots = [(name, address) for name, address in primed[1] if address]
            self._stack.append(_Lookup(self._qname, self._qtype, DNSLabel("."), self._root_servers(), 0))
            return
        if not self._stack:
            self._events.append(Done(message))
            self._state = _State.FINISHED
            return
        # A nested lookup of a name server's address: hand the addresses to the lookup that
        # needed them (following the answer's CNAME chain, if any).
        parent = self._stack[-1]
        target = name_key(lookup.qname)
        for rr in message.rr:
            if name_key(rr.rname) == target and rr.rtype == QTYPE.CNAME:
                target = name_key(rr.rdata.label)
        addresses = [
            str(rr.rdata) for rr in message.rr if rr.rtype == QTYPE.A and name_key(rr.rname) == target
        ]
        wanted = name_key(lookup.qname)
        parent.servers = [
            (name, address)
            for name, address in parent.servers
            if name_key(DNSLabel(name)) != wanted or address
        ] + [(str(lookup.qname).rstrip("."), a) for a in addresses]

    def _root_servers(self) -> list[tuple[str, str | None]]:
        return [(name, address) for name, address in self._roots]

    def _next_query(self, now: float) -> None:
        while self._stack:
            lookup = self._stack[-1]
            if self.queries >= self.max_queries:
                return self._fail(f"gave up after {self.queries} queries")
            candidates = [(n, a) for n, a in lookup.servers if a is not None and a not in lookup.tried]
            if candidates:
                name, address = self._rng.choice(candidates)
                lookup.tried.add(address)
                return self._send(lookup, (address, self.port), name, now, tcp=False)
            unresolved = [n for n, a in lookup.servers if a is None and n not in lookup.looked_up]
            if unresolved and lookup.depth < self.max_depth:
                name = unresolved[0]
                lookup.looked_up.add(name)
                self._stack.append(
                    _Lookup(DNSLabel(name), QTYPE.A, DNSLabel("."), self._root_servers(), lookup.depth + 1)
                )
                continue
            if self._priming:
                # No root server answered the priming query: go on with the hints as they are.
                self._stack.pop()
                self._priming = False
                self._stack.append(_Lookup(self._qname, self._qtype, DNSLabel("."), self._root_servers(), 0))
                continue
            if len(self._stack) == 1:
                return self._fail(f"no server of {lookup.zone} answered")
            self._stack.pop()  # this name server's address is not to be had; the parent goes on
        return self._fail("nothing left to ask")

    def _fail(self, reason: str) -> None:
        self._events.append(Failed(reason))
        self._state = _State.FINISHED
        return None

    def _send(self, lookup: _Lookup, server: Addr, name: str, now: float, *, tcp: bool) -> None:
        message_id = self._rng.getrandbits(16)
        query = DNSRecord(q=DNSQuestion(lookup.qname, lookup.qtype))
        query.header.id = message_id
        query.header.rd = 0  # iterative: we do the recursion
        if self.edns:
            query.add_ar(EDNS0(udp_len=DEFAULT_UDP_PAYLOAD))
        data = bytes(query.pack())
        self.queries += 1
        self._pending = _Pending(lookup, server, name, message_id, tcp, now, data)
        self._state = _State.WAITING
        self._outbox.append(Outgoing(data, server, tcp))


def _referral(
    message: DNSRecord, lookup: _Lookup, *, priming: bool = False
) -> tuple[DNSLabel, list[tuple[str, str | None]]] | None:
    """The zone and servers a reply delegates to, if it is a usable referral from ``lookup.zone``."""
    section = message.rr if priming else message.auth
    ns = [rr for rr in section if rr.rtype == QTYPE.NS]
    if not ns:
        return None
    zone = ns[0].rname
    zone_key, current, target = name_key(zone), name_key(lookup.zone), name_key(lookup.qname)
    if any(name_key(rr.rname) != zone_key for rr in ns):
        return None
    below_current = zone_key[len(zone_key) - len(current) :] == current
    above_target = target[len(target) - len(zone_key) :] == zone_key
    if not priming and (len(zone_key) <= len(current) or not below_current or not above_target):
        return None  # upwards, sideways or not towards the name: lame
    glue: dict[tuple[bytes, ...], list[str]] = {}
    for rr in message.ar:
        owner = name_key(rr.rname)
        # Only addresses inside the zone of the server that sent them (RFC 5452 section 6).
        if rr.rtype == QTYPE.A and owner[len(owner) - len(current) :] == current:
            glue.setdefault(owner, []).append(str(rr.rdata))
    servers: list[tuple[str, str | None]] = []
    for rr in ns:
        name = str(rr.rdata.label).rstrip(".")
        addresses = glue.get(name_key(rr.rdata.label))
        servers += [(name, a) for a in addresses] if addresses else [(name, None)]
    return zone, servers
