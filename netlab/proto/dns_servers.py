"""What the resolver knows about each upstream server: speed, failures, lameness, EDNS.

Strategy: one record per server address with an RFC 6298 estimator (the same one the reliable
transport uses) giving both the smoothed RTT and the retransmission timeout of the next query.
Every query to a DNS server carries a fresh ID, so an answer names the very query it answers and
every answer is a clean RTT sample: Karn's ambiguity (RFC 6298 section 3) never arises.

Choosing a server follows BIND's well-tried rule: the candidate with the lowest smoothed RTT
wins, servers never measured count as fastest (so each gets tried, in random order), and the
SRTT of every candidate not chosen decays a little, so a server that was slow once is tried
again eventually instead of being starved for ever (RFC 1034 section 5.3.3 asks resolvers to
keep such statistics and prefer the fastest server).

Two kinds of failure take a server out of rotation for a while:

* *dead*: several consecutive timeouts (or refused connections); the server is skipped for
  ``dead_hold`` seconds, then tried again.
* *lame* for one zone: it answered REFUSED, or non-authoritatively, or referred us upwards for a
  zone it is supposed to serve (RFC 1912 section 2.8 / RFC 4697 section 2.2).  Lameness is per
  (server, zone): the same address may serve other zones well.

Both tables are bounded, so a flood of delegations to fresh addresses cannot grow them without
limit.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from netlab.proto.dns_rrset import Name
from netlab.transport.rto import RtoEstimator

__all__ = ["ServerTable"]

Addr = tuple[str, int]

INITIAL_RTO = 0.4  # seconds; a first guess that suits both loopback and the Internet (unbound: 376 ms)
MIN_RTO = 0.1  # seconds; an authoritative server answers from memory, but may be busy
MAX_RTO = 4.0  # seconds; the client's whole question has a deadline of a few seconds anyway
DECAY = 0.98  # BIND's factor for the SRTT of servers passed over
DEAD_AFTER = 3  # consecutive timeouts
DEAD_HOLD = 60.0  # seconds a dead server is skipped
LAME_HOLD = 600.0  # seconds a lame server is skipped for its zone (unbound: 900)
MAX_SERVERS = 10_000  # bound on each table


@dataclass
class _Server:
    rto: RtoEstimator
    #: The SRTT as the choice sees it: measured, decayed while not chosen, penalised on timeouts.
    rank_rtt: float | None = None
    timeouts: int = 0  # consecutive
    dead_until: float = float("-inf")
    no_edns: bool = False  # answered FORMERR/NOTIMP to a query with an OPT record
    answers: int = 0
    lost: int = 0


@dataclass
class ServerTable:
    """Per-address statistics and the choice of the next server to ask."""

    rng: random.Random
    initial_rto: float = INITIAL_RTO
    min_rto: float = MIN_RTO
    max_rto: float = MAX_RTO
    dead_after: int = DEAD_AFTER
    dead_hold: float = DEAD_HOLD
    lame_hold: float = LAME_HOLD
    max_servers: int = MAX_SERVERS
    _servers: OrderedDict[Addr, _Server] = field(default_factory=OrderedDict)
    _lame: OrderedDict[tuple[Addr, Name], float] = field(default_factory=OrderedDict)

    def _get(self, addr: Addr) -> _Server:
        server = self._servers.get(addr)
        if server is None:
            server = _Server(
                RtoEstimator(initial_rto=self.initial_rto, min_rto=self.min_rto, max_rto=self.max_rto)
            )
            self._servers[addr] = server
            if len(self._servers) > self.max_servers:
                self._servers.popitem(last=False)
        else:
            self._servers.move_to_end(addr)
        return server

    def forget(self) -> None:
        """Drop every statistic and every dead or lame mark."""
        self._servers.clear()
        self._lame.clear()

    # -- choosing --------------------------------------------------------------------------

    def usable(self, addr: Addr, zone: Name, now: float) -> bool:
        """Neither dead nor lame for ``zone`` at ``now``."""
        server = self._servers.get(addr)
        if server is not None and server.dead_until > now:
            return False
        until = self._lame.get((addr, zone))
        return until is None or until <= now

    def choose(self, candidates: Iterable[Addr], zone: Name, now: float) -> Addr | None:
        """The usable candidate with the lowest smoothed RTT, or None if none is usable."""
        usable = [a for a in dict.fromkeys(candidates) if self.usable(a, zone, now)]
        if not usable:
            return None
        # Never-measured servers sort first, in random order: each gets its chance early.
        keyed = [(self._get(a).rank_rtt or 0.0, self.rng.random(), a) for a in usable]
        best = min(keyed)[2]
        for addr in usable:
            if addr != best:
                other = self._get(addr)
                if other.rank_rtt is not None:
                    other.rank_rtt *= DECAY
        return best

    def timeout(self, addr: Addr) -> float:
        """How long to wait for an answer from ``addr`` before trying again (seconds)."""
        return self._get(addr).rto.rto

    def edns(self, addr: Addr) -> bool:
        """Whether to send an OPT record to ``addr`` (False once it rejected one)."""
        server = self._servers.get(addr)
        return server is None or not server.no_edns

    # -- learning --------------------------------------------------------------------------

    def answered(self, addr: Addr, rtt: float) -> None:
        """An answer came back after ``rtt`` seconds."""
        server = self._get(addr)
        server.rto.sample(rtt)
        server.rank_rtt = server.rto.srtt
        server.timeouts = 0
        server.answers += 1

    def timed_out(self, addr: Addr, now: float) -> None:
        """No answer in time (or the connection was refused): back off, maybe declare it dead."""
        server = self._get(addr)
        server.lost += 1
        server.timeouts += 1
        server.rank_rtt = (server.rank_rtt or 0.0) + server.rto.rto
        server.rto.backoff()
        if server.timeouts >= self.dead_after:
            server.dead_until = now + self.dead_hold
            server.timeouts = 0

    def reject_edns(self, addr: Addr) -> None:
        """The server does not understand EDNS (RFC 6891 section 7): ask it without an OPT record."""
        self._get(addr).no_edns = True

    def mark_lame(self, addr: Addr, zone: Name, now: float) -> None:
        """``addr`` does not serve ``zone`` properly: skip it for that zone for a while."""
        key = (addr, zone)
        self._lame[key] = now + self.lame_hold
        self._lame.move_to_end(key)
        if len(self._lame) > self.max_servers:
            self._lame.popitem(last=False)

    def srtt(self, addr: Addr) -> float | None:
        server = self._servers.get(addr)
        return None if server is None else server.rto.srtt

    def is_dead(self, addr: Addr, now: float) -> bool:
        server = self._servers.get(addr)
        return server is not None and server.dead_until > now
