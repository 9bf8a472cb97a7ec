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

Steps 1 to 3 live in :mod:`netlab.proto.dns_search`, what each kind of answer does in
:mod:`netlab.proto.dns_replies`; this module holds the entry points, the tasks' scheduling, the
upstream exchanges and the timers.

Bounds keep a question from running away: a budget of upstream queries per client question, a
deadline (SERVFAIL after it), a limit on CNAME chain length with loop detection, and a depth
limit on nested look-ups of name-server addresses.  Identical questions in flight share one task.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass, field

import dnslib

from netlab.proto.dns_cache import DnsCache, HitKind, TimedRRset
from netlab.proto.dns_events import (
    Answer,
    Event,
    ExchangeClosed,
    NoReply,
    Resolved,
    ResolverSettings,
    ResolverStats,
    Step,
    UpstreamQuery,
    build_answer,
)
from netlab.proto.dns_hints import RootHints
from netlab.proto.dns_replies import count_failure, matches
from netlab.proto.dns_rrset import Name, encode_query
from netlab.proto.dns_search import PRIME_KEY, Searching
from netlab.proto.dns_servers import ServerTable
from netlab.proto.dns_task import Budget, Exchange, Task, TaskState
from netlab.proto.dns_wire import RemoteProtocolError, Transport, parse_message_untrusted

__all__ = [
    "Answer",
    "Event",
    "ExchangeClosed",
    "NoReply",
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
TCP_MIN_TIMEOUT = 1.0  # seconds; a TCP exchange also pays for the handshake
CLASS_IN = 1


@dataclass
class Resolver(Searching):
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

    @classmethod
    def for_trace(
        cls, hints: RootHints, rng: random.Random, *, port: int = 53, deadline: float = 15.0
    ) -> Resolver:
        """A machine that iterates as ``dig +trace`` does: from the root every time (no cache),
        the full name to every server, a CNAME shown rather than followed, every step reported."""
        settings = ResolverSettings(
            upstream_port=port,
            qname_minimisation=False,
            deadline=deadline,
            follow_cnames=False,
            trace=True,
        )
        return cls(hints, rng, settings, DnsCache(0))

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
        chain, hit, _last, ok = self.cache.follow(qname, qtype, {qname}, self.settings.max_cname_chain, now)
        if not ok or hit is None or hit.kind is HitKind.CNAME:
            return None
        return build_answer(*hit.outcome(), chain, now)

    def flush(self) -> None:
        """Forget everything learnt (the cache, the servers' statistics, the priming), as a
        reload of unbound does.  Questions in flight carry on."""
        self.cache.clear()
        self._table.forget()
        self._prime_after = float("-inf")

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
        if from_addr != ex.server or reply is None or not matches(reply, ex):
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
                    ex.server_name,
                    ex.transport,
                    reply,
                    len(data),
                    now - ex.sent_at,
                )
            )
        if reply.header.tc and ex.transport is Transport.UDP:
            # RFC 7766 section 5 / RFC 1035 section 4.2.1: a truncated answer is asked again over TCP.
            self._query(task, ex.server, ex.server_name, ex.zone, now, Transport.TCP)
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

    # -- tasks -------------------------------------------------------------------------------

    def _new_task(self, key: tuple[Name, int], deadline: float, budget: Budget, depth: int) -> Task:
        # A name server's own name is no client's secret (RFC 9156 protects what clients ask):
        # look its address up with the full name, one query per zone instead of one per label.
        minimise = self.settings.qname_minimisation and depth == 0
        task = Task(key, key[0], key[1], deadline, budget, depth, minimise=minimise)
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
                for addr in sub.final.rrset.addresses():
                    if self._usable_family(addr):
                        task.cut.addrs[(addr, port)] = sub.key[0]
        while task.state is TaskState.SEARCHING:
            if task.cut is None:
                self._search_cache(task, now)
            elif self._send_next(task, now) or self._look_up_server(task, now):
                pass
            elif task.cut.round < self.settings.tries_per_server:
                task.cut.round += 1
            else:
                self._finish(task, RCODE.SERVFAIL, now)

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
            # Priming is part of every question's own path; a name server's address is a detour.
            depth = task.depth if key == PRIME_KEY else task.depth + 1
            sub = self._new_task(key, task.deadline, task.budget, depth)
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
            answer = build_answer(rcode, final, soa, task.chain, now)
            self._events.extend(Resolved(t, answer) for t in task.tickets)
        self._runnable.extend(task.dependents)

    # -- exchanges -----------------------------------------------------------------------------

    def _query(
        self, task: Task, server: Addr, server_name: Name, zone: Name, now: float, transport: Transport
    ) -> None:
        if task.budget.left <= 0:
            self.stats.budget_exhausted += 1
            self._finish(task, RCODE.SERVFAIL, now)
            return
        task.budget.left -= 1
        qname, qtype = task.question(QTYPE.A)
        edns = self._table.edns(server)
        msg_id = self.rng.getrandbits(16)
        # RD clear: we ask authorities, not another recursive resolver (RFC 1034 section 5.3.1).
        wire = encode_query(msg_id, qname, qtype, edns_payload=self.settings.edns_payload if edns else None)
        timeout = self._table.timeout(server)
        if transport is Transport.TCP:
            timeout = max(2 * timeout, TCP_MIN_TIMEOUT)
            self.stats.tcp_queries += 1
        handle = next(self._handles)
        ex = Exchange(
            handle, task, server, server_name, zone, qname, qtype, msg_id, transport, edns, now, now + timeout
        )
        self._exchanges[ex.handle] = ex
        task.exchange = ex
        task.move(TaskState.QUERYING)
        self._push_timer(ex.timeout_at, ex)
        self._outgoing.append(UpstreamQuery(ex.handle, server, wire, transport))
        self.stats.upstream_queries += 1

    def _close(self, ex: Exchange) -> None:
        if self._exchanges.pop(ex.handle, None) is not None:
            self._events.append(ExchangeClosed(ex.handle))

    def _fail(self, ex: Exchange, now: float) -> None:
        """No usable answer from ``ex``: the task moves on to another server or round."""
        self._close(ex)
        self._table.timed_out(ex.server, now)
        task = ex.task
        if self.settings.trace:
            self._events.append(
                NoReply(task.depth, (ex.qname, ex.qtype), ex.server, ex.server_name, ex.transport)
            )
        count_failure(task, ex.server)
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
