"""What the resolver machine is told and tells: its settings, its outputs and its events.

Strategy: plain frozen dataclasses, so that drivers, tests and ``netlab dig +trace`` share one
vocabulary with the machine (:mod:`netlab.proto.dns_resolve`): an :class:`UpstreamQuery` to send,
and the events :class:`Resolved` (a client's :class:`Answer`), :class:`ExchangeClosed` (forget
that socket), and, when tracing, :class:`Step` and :class:`NoReply` for every upstream exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

import dnslib

from netlab.proto.dns_cache import TimedRRset
from netlab.proto.dns_rrset import Name
from netlab.proto.dns_wire import Transport

__all__ = [
    "Answer",
    "Event",
    "ExchangeClosed",
    "NoReply",
    "Resolved",
    "ResolverSettings",
    "ResolverStats",
    "Step",
    "UpstreamQuery",
    "build_answer",
]

Addr = tuple[str, int]
SERVFAIL = dnslib.RCODE.SERVFAIL


@dataclass(frozen=True)
class ResolverSettings:
    upstream_port: int = 53  # glue carries no port: every server is asked on this one
    qname_minimisation: bool = True
    edns_payload: int = 1232  # bytes; RFC 6891, the size that avoids IP fragmentation
    deadline: float = 8.0  # seconds for a whole client question
    max_upstream_queries: int = 48  # per client question, everything it spawned included
    max_cname_chain: int = 12
    max_depth: int = 4  # nested look-ups of name-server addresses (glueless delegations)
    tries_per_server: int = 3  # queries to one server at one zone cut for one question
    max_tasks: int = 10_000  # questions in flight; beyond it new ones get SERVFAIL at once
    ipv6: bool = False  # also use IPv6 server addresses
    prime: bool = True  # ask for the root's NS RRset first (RFC 8109)
    #: False: a CNAME pointing out of its zone ends the question (``dig +trace`` shows, not follows).
    follow_cnames: bool = True
    trace: bool = False  # emit Step and NoReply events for every upstream exchange (dig +trace)


@dataclass(frozen=True)
class UpstreamQuery:
    """A query to send: over a fresh socket (UDP) or connection (TCP) to ``server``."""

    exchange: int  # tag the answers with it: they count only for this exchange
    server: Addr
    wire: bytes
    transport: Transport


@dataclass(frozen=True)
class Answer:
    """What to tell the client: the RCODE, the answer section, the authority section."""

    rcode: int
    answer: tuple[dnslib.RR, ...] = ()
    authority: tuple[dnslib.RR, ...] = ()


@dataclass(frozen=True)
class Resolved:
    ticket: int
    answer: Answer


@dataclass(frozen=True)
class ExchangeClosed:
    """The machine wants nothing more from this exchange: close its socket."""

    exchange: int


@dataclass(frozen=True)
class Step:
    """An upstream answer that was accepted (only with ``trace``).

    ``depth`` is 0 on the client question's own path (priming included) and grows by one inside
    each nested look-up of a name server's address.
    """

    depth: int
    question: tuple[Name, int]
    zone: Name
    server: Addr
    server_name: Name
    transport: Transport
    reply: dnslib.DNSRecord
    size: int
    rtt: float


@dataclass(frozen=True)
class NoReply:
    """An upstream query that got no usable answer in time (only with ``trace``)."""

    depth: int
    question: tuple[Name, int]
    server: Addr
    server_name: Name
    transport: Transport


Event = Resolved | ExchangeClosed | Step | NoReply


@dataclass
class ResolverStats:
    client_queries: int = 0
    coalesced: int = 0
    upstream_queries: int = 0
    tcp_queries: int = 0
    timeouts: int = 0
    mismatched: int = 0  # answers with the wrong source, ID or question: ignored
    late: int = 0  # answers for exchanges already closed
    lame: int = 0
    bailiwick_dropped: int = 0
    servfail: int = 0
    deadline_expired: int = 0
    budget_exhausted: int = 0
    overloaded: int = 0


def build_answer(
    rcode: int, final: TimedRRset | None, soa: TimedRRset | None, chain: list[TimedRRset], now: float
) -> Answer:
    """The client's answer: the CNAME chain then the final RRset, TTLs counted down to ``now``."""
    records = [rr for timed in chain for rr in timed.records(now)]
    if final is not None:
        records += final.records(now)
    authority = tuple(soa.records(now)) if soa is not None else ()
    if rcode == SERVFAIL:
        return Answer(rcode)
    return Answer(rcode, tuple(records), authority)
