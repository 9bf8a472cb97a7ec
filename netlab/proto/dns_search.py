"""The searching part of a question's life: the cache, the closest zone cut, the next server.

Strategy: a mix-in of the resolver machine holding steps 1 to 3 of RFC 1034 section 5.3.3 for a
task in the SEARCHING state: answer from the cache (following cached CNAMEs), else find the
closest zone cut the cache knows and the addresses of its servers, else start at the root (after
priming it once, RFC 8109); then pick the server to ask (by smoothed RTT, skipping dead and lame
ones), or look up the address of a name server that came without glue.
"""

from __future__ import annotations

import dnslib

from netlab.proto.dns_cache import HitKind
from netlab.proto.dns_hints import RootHints
from netlab.proto.dns_replies import ReplyHandling
from netlab.proto.dns_rrset import ROOT, Name, is_subdomain
from netlab.proto.dns_task import Cut, Task
from netlab.proto.dns_wire import Transport

__all__ = ["PRIME_INTERVAL", "PRIME_KEY", "Searching"]

Addr = tuple[str, int]
QTYPE = dnslib.QTYPE
RCODE = dnslib.RCODE
PRIME_KEY: tuple[Name, int] = (ROOT, QTYPE.NS)
PRIME_INTERVAL = 3600.0  # seconds between priming attempts when the cache lost the root NS RRset


class Searching(ReplyHandling):
    """Steps 1 to 3 of RFC 1034 section 5.3.3 (a mix-in of ``Resolver``)."""

    hints: RootHints
    _inflight: dict[tuple[Name, int], Task]
    _prime_after: float
    _address_types: tuple[int, ...]

    def _wait_for(self, task: Task, key: tuple[Name, int], now: float) -> bool:
        raise NotImplementedError

    def _search_cache(self, task: Task, now: float) -> None:
        """Steps 1 and 2: answer from the cache, or find the closest zone cut to start at."""
        chain, hit, last, ok = self.cache.follow(
            task.qname, task.qtype, task.seen, self.settings.max_cname_chain, now
        )
        task.chain += chain
        task.qname = last
        if not ok or len(task.chain) > self.settings.max_cname_chain:
            self._finish(task, RCODE.SERVFAIL, now)
        elif hit is not None:
            rcode, final, soa = hit.outcome()
            self._finish(task, rcode, now, final, soa)
        else:
            self._find_cut(task, now)

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
        hinted = {
            (addr, port): name
            for name, addrs in self.hints.servers
            for addr in addrs
            if self._usable_family(addr)
        }
        task.enter(Cut(ROOT, hinted, []))

    def _cut(self, zone: Name, ns_names: list[Name], glue: dict[Name, list[str]], now: float) -> Cut:
        port = self.settings.upstream_port
        addrs: dict[Addr, Name] = {}
        unresolved: list[Name] = []
        for name in ns_names:
            found = glue.get(name) or self.cache.addresses(name, self._address_types, now)
            if found:
                addrs.update(((a, port), name) for a in found if self._usable_family(a))
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
        self._skip_known_names(task, now)
        self._query(task, server, cut.addrs[server], cut.zone, now, Transport.UDP)
        return True

    def _skip_known_names(self, task: Task, now: float) -> None:
        """QNAME minimisation: no need to ask about a name the cache knows is not a zone cut.

        A cached answer or "no data" for a minimised name came from its zone's own servers, so
        the name is not delegated away: add the next label without asking (RFC 9156 section 3
        leaves the cache's use open; asking again would only repeat what is known).
        """
        while task.minimise and task.asked_labels < len(task.qname):
            name, qtype = task.question(QTYPE.A)
            hit = self.cache.lookup(name, qtype, now)
            if hit is None or hit.kind not in (HitKind.ANSWER, HitKind.NODATA):
                return
            task.deeper()

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
