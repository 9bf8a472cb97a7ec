"""The iterative, caching resolver as a sans-I/O machine (RFC 1034 section 5.3.3).

Strategy: the machine never touches a socket or a clock.  A driver hands it client questions
(:meth:`Resolver.submit`), the bytes of upstream answers (:meth:`Resolver.receive_datagram`,
tagged with the exchange they arrived for) and the time; the machine hands back the queries to
send (:meth:`Resolver.datagrams_to_send`), the time it next needs waking (:meth:`get_timer`) and
events (:meth:`next_event`): a client's answer, an exchange the driver may forget, and, when
tracing, every upstream answer it accepted.

Each question is a :class:`~netlab.proto.dns_task.Task`.  Every public entry point changes some
state and then runs the tasks that became runnable, so one task never runs inside another and a
task spawned for another (a name server's address, priming) simply joins the run queue.  A task
runs the algorithm of RFC 1034 section 5.3.3:

1. look in the cache (following cached CNAMEs);
2. find the closest zone cut the cache knows, or start from the root hints (after priming the
   root's NS RRset once, RFC 8109);
3. ask the best server of that cut (by smoothed RTT, skipping dead and lame ones), minimising the
   name asked (RFC 9156); on a referral move down to the child zone, on a CNAME that leaves the
   zone start again from step 1 for its target, on an answer or a negative answer finish.

Bounds keep a question from running away: a budget of upstream queries per client question, a
deadline (SERVFAIL after it), a limit on CNAME chain length with loop detection, and a depth
limit on nested look-ups of name-server addresses.  Identical questions in flight share one task.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import dnslib

from netlab.proto import dns_response
from netlab.proto.dns_cache import CacheHit, DnsCache, HitKind, Rank, TimedRRset
from netlab.proto.dns_hints import RootHints
from netlab.proto.dns_response import Classified, Kind
from netlab.proto.dns_rrset import ROOT, Name, is_subdomain, name_of, to_label
from netlab.proto.dns_servers import ServerTable
from netlab.proto.dns_task import Budget, Cut, Exchange, Task, TaskState
from netlab.proto.dns_wire import RemoteProtocolError, Transport, parse_message_untrusted

__all__ = [
    "Answer",
    "Event",
    "ExchangeClosed",
    "Resolved",
    "Resolver",
    "ResolverSettings",
    "ResolverStats",
    "Step",
    "Transport",
    "UpstreamQuery",
]

Addr = tuple[str, int]
QTYPE = dnslib.QTYPE
RCODE = dnslib.RCODE
PRIME_KEY: tuple[Name, int] = (ROOT, QTYPE.NS)
PRIME_INTERVAL = 3600.0  # seconds between priming attempts when the cache lost the root NS RRset
TCP_MIN_TIMEOUT = 1.0  # seconds; a TCP exchange also pays for the handshake
CLASS_IN = 1


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
    trace: bool = False  # emit a Step event for every upstream answer (netlab dig +trace)


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
    """An upstream answer that was accepted (only with ``trace``)."""

    depth: int
    question: tuple[Name, int]
    zone: Name
    server: Addr
    transport: Transport
    reply: dnslib.DNSRecord
    size: int
    rtt: float


Event = Resolved | ExchangeClosed | Step


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


@dataclass
class Resolver:
    """The resolving machine.

    Args:
        hints: the root servers to start from.
        rng: source of query IDs (``random.SystemRandom()`` in production: RFC 5452 section 9.2).
        settings: limits and switches.
        cache: shared with nobody else; a fresh one by default.
        servers: per-server statistics; a fresh table by default.
    """

    hints: RootHints
    rng: random.Random
    settings: ResolverSettings = field(default_factory=ResolverSettings)
    cache: DnsCache = field(default_factory=DnsCache)
    servers: ServerTable | None = None
    stats: ResolverStats = field(default_factory=ResolverStats)

    def __post_init__(self) -> None:
        if self.servers is None:
            self.servers = ServerTable(self.rng)
        self._table: ServerTable = self.servers
        self._tickets = itertools.count(1)
        self._handles = itertools.count(1)
        self._order = itertools.count()
        self._inflight: dict[tuple[Name, int], Task] = {}
        self._exchanges: dict[int, Exchange] = {}
        self._timers: list[tuple[float, int, Exchange | Task]] = []
        self._runnable: deque[Task] = deque()
        self._outgoing: list[UpstreamQuery] = []
        self._events: deque[Event] = deque()
        self._prime_after = float("-inf")
        self._address_types: tuple[int, ...] = (QTYPE.A, QTYPE.AAAA) if self.settings.ipv6 else (QTYPE.A,)

    # -- the driver's side ------------------------------------------------------------------

    def submit(self, qname: Name, qtype: int, now: float) -> int:
        """Start resolving a client's question; its answer comes as a :class:`Resolved` event.

        Returns:
            The ticket that the :class:`Resolved` event will carry.
        """
        ticket = next(self._tickets)
        self.stats.client_queries += 1
        key = (qname, qtype)
        task = self._inflight.get(key)
        if task is not None:
            self.stats.coalesced += 1
            task.tickets.append(ticket)
        elif len(self._inflight) >= self.settings.max_tasks:
            self.stats.overloaded += 1
            self._events.append(Resolved(ticket, Answer(RCODE.SERVFAIL)))
        else:
            budget = Budget(self.settings.max_upstream_queries)
            task = self._new_task(key, now + self.settings.deadline, budget, depth=0)
            task.tickets.append(ticket)
        self._run(now)
        return ticket

    def answer_from_cache(self, qname: Name, qtype: int, now: float) -> Answer | None:
        """The answer if the cache alone can give it (no task, no upstream query), else None."""
        chain, hit, _last, ok = self._walk_cache(qname, qtype, {qname}, now)
        if not ok or hit is None or hit.kind is HitKind.CNAME:
            return None
        return _answer(*_outcome(hit), chain, now)

    def datagrams_to_send(self, now: float) -> list[UpstreamQuery]:
        out, self._outgoing = self._outgoing, []
        return out

    def receive_datagram(self, data: bytes, from_addr: Addr, now: float, *, exchange: int) -> None:
        """An answer arrived on the socket (or connection) of ``exchange`` from ``from_addr``.

        It counts only if it comes from the server asked, parses, and carries the query's ID and
        question (RFC 5452 section 9.1); anything else is ignored and the exchange keeps waiting.
        """
        ex = self._exchanges.get(exchange)
        if ex is None:
            self.stats.late += 1
            return
        try:
            reply: dnslib.DNSRecord | None = parse_message_untrusted(data)
        except RemoteProtocolError:
            reply = None
        if from_addr != ex.server or reply is None or not _matches(reply, ex):
            self.stats.mismatched += 1
            if ex.transport is Transport.TCP:
                # A connection is ours alone: nonsense on it means the server is broken.
                self._fail(ex, now)
                self._run(now)
            return
        self._close(ex)
        self._table.answered(ex.server, now - ex.sent_at)
        task = ex.task
        task.exchange = None
        if self.settings.trace:
            self._events.append(
                Step(
                    task.depth,
                    (ex.qname, ex.qtype),
                    ex.zone,
                    ex.server,
                    ex.transport,
                    reply,
                    len(data),
                    now - ex.sent_at,
                )
            )
        if reply.header.tc and ex.transport is Transport.UDP:
            # RFC 7766 section 5 / RFC 1035 section 4.2.1: a truncated answer is asked again over TCP.
            self._query(task, ex.server, ex.zone, now, Transport.TCP)
        else:
            task.move(TaskState.SEARCHING)
            self._on_reply(task, ex, reply, now)
            self._runnable.append(task)
        self._run(now)

    def exchange_failed(self, exchange: int, now: float) -> None:
        """The driver could not complete ``exchange`` (connection refused or reset, ICMP error)."""
        ex = self._exchanges.get(exchange)
        if ex is not None:
            self._fail(ex, now)
            self._run(now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None if nothing is pending."""
        while self._timers and not self._timer_live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> None:
        """Time out the exchanges and questions whose time has come."""
        while (when := self.get_timer()) is not None and when <= now:
            _, _, item = heapq.heappop(self._timers)
            if isinstance(item, Exchange):
                self.stats.timeouts += 1
                self._fail(item, now)
            else:
                self.stats.deadline_expired += 1
                self._finish(item, RCODE.SERVFAIL, now)
        self._run(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.popleft()

    # -- tasks -------------------------------------------------------------------------------

    def _new_task(self, key: tuple[Name, int], deadline: float, budget: Budget, depth: int) -> Task:
        task = Task(key, key[0], key[1], deadline, budget, depth, minimise=self.settings.qname_minimisation)
        task.seen.add(key[0])
        self._inflight[key] = task
        self._push_timer(deadline, task)
        self._runnable.append(task)
        return task

    def _run(self, now: float) -> None:
        while self._runnable:
            self._advance(self._runnable.popleft(), now)

    def _advance(self, task: Task, now: float) -> None:
        if task.state is TaskState.WAITING:
            sub = task.waiting_on
            if sub is None or sub.state is not TaskState.DONE:
                return
            task.waiting_on = None
            task.move(TaskState.SEARCHING)
            if sub.key != PRIME_KEY and task.cut is not None and sub.final is not None:
                port = self.settings.upstream_port
                task.cut.addrs += [(a, port) for a in sub.final.rrset.addresses() if self._usable_family(a)]
        while task.state is TaskState.SEARCHING:
            if task.cut is None:
                self._search_cache(task, now)
            elif self._send_next(task, now) or self._look_up_server(task, now):
                pass
            elif task.cut.round < self.settings.tries_per_server:
                task.cut.round += 1
            else:
                self._finish(task, RCODE.SERVFAIL, now)

    def _search_cache(self, task: Task, now: float) -> None:
        """Steps 1 and 2: answer from the cache, or find the closest zone cut to start at."""
        chain, hit, last, ok = self._walk_cache(task.qname, task.qtype, task.seen, now)
        task.chain += chain
        task.qname = last
        if not ok or len(task.chain) > self.settings.max_cname_chain:
            self._finish(task, RCODE.SERVFAIL, now)
        elif hit is not None:
            rcode, final, soa = _outcome(hit)
            self._finish(task, rcode, now, final, soa)
        else:
            self._find_cut(task, now)

    def _walk_cache(
        self, qname: Name, qtype: int, seen: set[Name], now: float
    ) -> tuple[list[TimedRRset], CacheHit | None, Name, bool]:
        """Follow cached CNAMEs from ``qname``: (chain, the last hit, the last name, no loop)."""
        chain: list[TimedRRset] = []
        name = qname
        for _ in range(self.settings.max_cname_chain + 1):
            hit = self.cache.lookup(name, qtype, now)
            if hit is None or hit.kind is not HitKind.CNAME or hit.data is None:
                return chain, hit, name, True
            chain.append(hit.data)
            name = hit.data.rrset.targets()[0]
            if name in seen:
                return chain, hit, name, False
            seen.add(name)
        return chain, None, name, False

    def _find_cut(self, task: Task, now: float) -> None:
        ns = self.cache.delegation(task.qname, now)
        while ns is not None:
            cut = self._cut(ns.name, ns.targets(), {}, now)
            if cut.usable:
                task.enter(cut)
                return
            # No address for any of its servers, and none can be looked up: try further up.
            ns = self.cache.delegation(ns.name[1:], now) if ns.name else None
        priming = self._inflight.get(PRIME_KEY)
        if (
            self.settings.prime
            and task.key != PRIME_KEY
            and (priming is not None or now >= self._prime_after)
        ):
            if priming is None:
                self._prime_after = now + PRIME_INTERVAL
            if self._wait_for(task, PRIME_KEY, now):
                return
        port = self.settings.upstream_port
        task.enter(Cut(ROOT, [(a, port) for a in self.hints.addresses(ipv6=self.settings.ipv6)], []))

    def _cut(self, zone: Name, ns_names: list[Name], glue: dict[Name, list[str]], now: float) -> Cut:
        port = self.settings.upstream_port
        addrs: list[Addr] = []
        unresolved: list[Name] = []
        for name in ns_names:
            found = glue.get(name) or self.cache.addresses(name, self._address_types, now)
            if found:
                addrs += [(a, port) for a in found if self._usable_family(a)]
            elif not is_subdomain(name, zone):
                # A server inside the zone with no glue can only be found through the zone itself.
                unresolved.append(name)
        return Cut(zone, addrs, unresolved)

    def _usable_family(self, addr: str) -> bool:
        return self.settings.ipv6 or ":" not in addr

    def _send_next(self, task: Task, now: float) -> bool:
        cut = task.cut
        assert cut is not None
        candidates = [a for a in cut.addrs if cut.tries.get(a, 0) < cut.round]
        server = self._table.choose(candidates, cut.zone, now)
        if server is None:
            return False
        self._query(task, server, cut.zone, now, Transport.UDP)
        return True

    def _look_up_server(self, task: Task, now: float) -> bool:
        """Glueless delegation: look up the address of one more of the cut's name servers."""
        cut = task.cut
        assert cut is not None
        if task.depth >= self.settings.max_depth:
            return False
        while cut.unresolved:
            if self._wait_for(task, (cut.unresolved.pop(0), QTYPE.A), now):
                return True
        return False

    def _wait_for(self, task: Task, key: tuple[Name, int], now: float) -> bool:
        """Make ``task`` wait for the question ``key`` (joining it if it is in flight)."""
        sub = self._inflight.get(key)
        if sub is not None:
            # Joining a task that (through its own waits) waits for us would deadlock.
            probe: Task | None = sub
            while probe is not None:
                if probe is task:
                    return False
                probe = probe.waiting_on
        else:
            sub = self._new_task(key, task.deadline, task.budget, task.depth + 1)
        sub.dependents.append(task)
        task.waiting_on = sub
        task.move(TaskState.WAITING)
        return True

    def _finish(
        self,
        task: Task,
        rcode: int,
        now: float,
        final: TimedRRset | None = None,
        soa: TimedRRset | None = None,
    ) -> None:
        if task.exchange is not None:
            self._close(task.exchange)
            task.exchange = None
        task.move(TaskState.DONE)
        task.rcode, task.final, task.soa = rcode, final, soa
        if rcode == RCODE.SERVFAIL:
            self.stats.servfail += 1
        if self._inflight.get(task.key) is task:
            del self._inflight[task.key]
        if task.tickets:
            answer = _answer(rcode, final, soa, task.chain, now)
            self._events.extend(Resolved(t, answer) for t in task.tickets)
        self._runnable.extend(task.dependents)

    # -- exchanges -----------------------------------------------------------------------------

    def _query(self, task: Task, server: Addr, zone: Name, now: float, transport: Transport) -> None:
        if task.budget.left <= 0:
            self.stats.budget_exhausted += 1
            self._finish(task, RCODE.SERVFAIL, now)
            return
        task.budget.left -= 1
        qname, qtype = task.question(QTYPE.A)
        edns = self._table.edns(server)
        msg_id = self.rng.getrandbits(16)
        # RD clear: we ask authorities, not another recursive resolver (RFC 1034 section 5.3.1).
        query = dnslib.DNSRecord(
            dnslib.DNSHeader(id=msg_id, rd=0), q=dnslib.DNSQuestion(to_label(qname), qtype)
        )
        if edns:
            query.add_ar(dnslib.EDNS0(udp_len=self.settings.edns_payload))
        timeout = self._table.timeout(server)
        if transport is Transport.TCP:
            timeout = max(2 * timeout, TCP_MIN_TIMEOUT)
            self.stats.tcp_queries += 1
        ex = Exchange(
            next(self._handles), task, server, zone, qname, qtype, msg_id, transport, edns, now, now + timeout
        )
        self._exchanges[ex.handle] = ex
        task.exchange = ex
        task.move(TaskState.QUERYING)
        self._push_timer(ex.timeout_at, ex)
        self._outgoing.append(UpstreamQuery(ex.handle, server, query.pack(), transport))
        self.stats.upstream_queries += 1

    def _close(self, ex: Exchange) -> None:
        if self._exchanges.pop(ex.handle, None) is not None:
            self._events.append(ExchangeClosed(ex.handle))

    def _fail(self, ex: Exchange, now: float) -> None:
        """No usable answer from ``ex``: the task moves on to another server or round."""
        self._close(ex)
        self._table.timed_out(ex.server, now)
        task = ex.task
        _count_failure(task, ex.server)
        task.exchange = None
        task.move(TaskState.SEARCHING)
        self._runnable.append(task)

    def _push_timer(self, when: float, item: Exchange | Task) -> None:
        heapq.heappush(self._timers, (when, next(self._order), item))

    def _timer_live(self, entry: tuple[float, int, Exchange | Task]) -> bool:
        when, _, item = entry
        if isinstance(item, Exchange):
            return item.handle in self._exchanges and item.timeout_at == when
        return item.state is not TaskState.DONE

    # -- answers -------------------------------------------------------------------------------

    def _on_reply(self, task: Task, ex: Exchange, reply: dnslib.DNSRecord, now: float) -> None:
        """Act on a matching answer (the task is SEARCHING and will be advanced afterwards)."""
        c = dns_response.classify(reply, ex.zone, ex.qname, ex.qtype, edns_sent=ex.edns)
        self.stats.bailiwick_dropped += c.dropped
        minimised = (ex.qname, ex.qtype) != (task.qname, task.qtype)
        if c.kind in (Kind.LAME, Kind.SERVER_FAILURE):
            _count_failure(task, ex.server)
            if c.kind is Kind.LAME:
                self.stats.lame += 1
                self._table.mark_lame(ex.server, ex.zone, now)
        elif c.kind is Kind.NO_EDNS:
            self._table.reject_edns(ex.server)
            self._query(task, ex.server, ex.zone, now, Transport.UDP)
        elif c.kind is Kind.REFERRAL:
            self._on_referral(task, c, now)
        else:
            answer = [self.cache.store(rrset, Rank.ANSWER, now) for rrset in c.answer]
            for glue in c.glue:
                self.cache.store(glue, Rank.GLUE, now)
            if minimised:
                self._on_minimised(task, c, ex, now)
            elif c.kind is Kind.ANSWER:
                if self._follow(task, answer[:-1], now):
                    self._finish(task, RCODE.NOERROR, now, answer[-1])
            elif c.kind is Kind.CNAME:
                if c.referral is not None:
                    self._cache_referral(c, now)
                if self._follow(task, answer, now):
                    task.cut = None  # start again for the target, from the cache down
            else:
                self._on_negative(task, c, answer, now)

    def _on_referral(self, task: Task, c: Classified, now: float) -> None:
        referral = self._cache_referral(c, now)
        glue: dict[Name, list[str]] = {}
        for rrset in referral.glue:
            glue.setdefault(rrset.name, []).extend(rrset.addresses())
        cut = self._cut(referral.zone, referral.ns.targets(), glue, now)
        if not cut.usable:
            # Delegated to servers inside the child zone without glue: nobody can reach them.
            self._finish(task, RCODE.SERVFAIL, now)
        else:
            task.enter(cut)

    def _cache_referral(self, c: Classified, now: float) -> dns_response.Referral:
        referral = c.referral
        assert referral is not None
        self.cache.store(referral.ns, Rank.REFERRAL, now)
        for rrset in referral.glue:
            self.cache.store(rrset, Rank.GLUE, now)
        return referral

    def _on_minimised(self, task: Task, c: Classified, ex: Exchange, now: float) -> None:
        if c.kind is Kind.NXDOMAIN:
            # Relaxed minimisation (RFC 9156 section 2.3 and unbound's default): some servers
            # wrongly deny empty non-terminals, so ask the full name before believing it.
            task.minimise = False
        else:
            if c.kind is Kind.NODATA and c.next_name == ex.qname:
                self.cache.store_negative(ex.qname, ex.qtype, c.soa, now)
            task.deeper()

    def _on_negative(self, task: Task, c: Classified, chain: list[TimedRRset], now: float) -> None:
        if not self._follow(task, chain, now):
            return
        last = c.next_name if c.next_name is not None else task.qname
        nxdomain = c.kind is Kind.NXDOMAIN
        soa = self.cache.store_negative(last, None if nxdomain else task.qtype, c.soa, now)
        if soa is None and c.soa is not None:
            soa = TimedRRset(c.soa, now)
        self._finish(task, RCODE.NXDOMAIN if nxdomain else RCODE.NOERROR, now, None, soa)

    def _follow(self, task: Task, cnames: list[TimedRRset], now: float) -> bool:
        """Add CNAMEs to the task's chain; False (and SERVFAIL) on a loop or an over-long chain."""
        for timed in cnames:
            task.chain.append(timed)
            target = timed.rrset.targets()[0]
            if target in task.seen or len(task.chain) > self.settings.max_cname_chain:
                self._finish(task, RCODE.SERVFAIL, now)
                return False
            task.seen.add(target)
            task.qname = target
        return True


def _count_failure(task: Task, server: Addr) -> None:
    if task.cut is not None:
        task.cut.tries[server] = task.cut.tries.get(server, 0) + 1


def _matches(reply: dnslib.DNSRecord, ex: Exchange) -> bool:
    """Does ``reply`` answer the query of ``ex``: ID, QR, opcode and the very same question?"""
    header = reply.header
    if header.id != ex.msg_id or not header.qr or header.opcode != 0 or len(reply.questions) != 1:
        return False
    q = reply.questions[0]
    return bool(q.qtype == ex.qtype and q.qclass == CLASS_IN and name_of(q.qname) == ex.qname)


def _outcome(hit: CacheHit) -> tuple[int, TimedRRset | None, TimedRRset | None]:
    """(rcode, final RRset, SOA) of a cache hit that ends a search."""
    if hit.kind is HitKind.ANSWER:
        return RCODE.NOERROR, hit.data, None
    return (RCODE.NXDOMAIN if hit.kind is HitKind.NXDOMAIN else RCODE.NOERROR), None, hit.data


def _answer(
    rcode: int, final: TimedRRset | None, soa: TimedRRset | None, chain: list[TimedRRset], now: float
) -> Answer:
    records = [rr for timed in chain for rr in timed.records(now)]
    if final is not None:
        records += final.records(now)
    authority = tuple(soa.records(now)) if soa is not None else ()
    if rcode == RCODE.SERVFAIL:
        return Answer(rcode)
    return Answer(rcode, tuple(records), authority)
