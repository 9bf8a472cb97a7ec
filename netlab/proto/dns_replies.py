"""Acting on an upstream answer: what each kind of response does to a question and the cache.

Strategy: :func:`netlab.proto.dns_response.classify` has already said what the response is and
which of its records may be believed; this mix-in of the resolver machine decides what follows.
Answers and CNAMEs are cached at the rank of authoritative data; referrals move the question one
zone cut down and cache the delegation at the lowest ranks; negative answers are cached as RFC
2308 says and end the question; lame and failing servers are counted so the next server is
tried.  Replies to minimised queries (RFC 9156) only tell whether the name asked is a zone cut:
if not, the next query carries one label more.
"""

from __future__ import annotations

import dnslib

from netlab.proto import dns_response
from netlab.proto.dns_cache import DnsCache, Rank, TimedRRset
from netlab.proto.dns_events import ResolverSettings, ResolverStats
from netlab.proto.dns_response import Classified, Kind
from netlab.proto.dns_rrset import Name, name_of
from netlab.proto.dns_servers import ServerTable
from netlab.proto.dns_task import Cut, Exchange, Task
from netlab.proto.dns_wire import Transport

__all__ = ["ReplyHandling", "count_failure", "matches"]

Addr = tuple[str, int]
RCODE = dnslib.RCODE
CLASS_IN = 1


class ReplyHandling:
    """The resolver machine's reaction to classified answers (a mix-in of ``Resolver``)."""

    cache: DnsCache
    settings: ResolverSettings
    stats: ResolverStats
    _table: ServerTable

    def _finish(
        self,
        task: Task,
        rcode: int,
        now: float,
        final: TimedRRset | None = None,
        soa: TimedRRset | None = None,
    ) -> None:
        raise NotImplementedError

    def _query(
        self, task: Task, server: Addr, server_name: Name, zone: Name, now: float, transport: Transport
    ) -> None:
        raise NotImplementedError

    def _cut(self, zone: Name, ns_names: list[Name], glue: dict[Name, list[str]], now: float) -> Cut:
        raise NotImplementedError

    def _on_reply(self, task: Task, ex: Exchange, reply: dnslib.DNSRecord, now: float) -> None:
        """Act on a matching answer (the task is SEARCHING and will be advanced afterwards)."""
        c = dns_response.classify(reply, ex.zone, ex.qname, ex.qtype, edns_sent=ex.edns)
        self.stats.bailiwick_dropped += c.dropped
        minimised = (ex.qname, ex.qtype) != (task.qname, task.qtype)
        if c.kind in (Kind.LAME, Kind.SERVER_FAILURE):
            count_failure(task, ex.server)
            if c.kind is Kind.LAME:
                self.stats.lame += 1
                self._table.mark_lame(ex.server, ex.zone, now)
        elif c.kind is Kind.NO_EDNS:
            self._table.reject_edns(ex.server)
            self._query(task, ex.server, ex.server_name, ex.zone, now, Transport.UDP)
        elif c.kind is Kind.REFERRAL:
            self._on_referral(task, c, now)
        else:
            rank = Rank.ANSWER if c.authoritative else Rank.NONAUTH_ANSWER
            answer = [self.cache.store(rrset, rank, now) for rrset in c.answer]
            for glue in c.glue:
                self.cache.store(glue, Rank.GLUE, now)
            if minimised:
                self._on_minimised(task, c, ex, now)
            elif c.kind is Kind.ANSWER:
                if self._follow(task, answer[:-1], now):
                    self._finish(task, RCODE.NOERROR, now, answer[-1])
            elif c.kind is Kind.CNAME and not self.settings.follow_cnames:
                task.chain += answer
                self._finish(task, RCODE.NOERROR, now)
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


def count_failure(task: Task, server: Addr) -> None:
    if task.cut is not None:
        task.cut.tries[server] = task.cut.tries.get(server, 0) + 1


def matches(reply: dnslib.DNSRecord, ex: Exchange) -> bool:
    """Does ``reply`` answer the query of ``ex``: ID, QR, opcode and the very same question?"""
    header = reply.header
    if header.id != ex.msg_id or not header.qr or header.opcode != 0 or len(reply.questions) != 1:
        return False
    q = reply.questions[0]
    return bool(q.qtype == ex.qtype and q.qclass == CLASS_IN and name_of(q.qname) == ex.qname)
