"""The resolver's cache: RRsets by TTL, negative answers by RFC 2308, and delegations.

Strategy: one ordered dictionary keyed by ``(owner name, type)`` holds every entry, positive or
negative, and doubles as the LRU list (a hit moves the entry to the end; when the cache is over
its bound the oldest entry goes).  Nothing outlives its TTL: expired entries are skipped and
dropped when met.  Answers read from the cache count the TTL down (RFC 1035 section 4.1.3: the
TTL is the time the record may still be cached), so ``expires`` is stored, not the TTL.

Every RRset is stored with its *rank*, the trustworthiness of where it came from (RFC 2181
section 5.4.1).  Data of a lower rank never replaces live data of a higher rank, and the two
lowest ranks (glue, and the NS records of a referral) are used to find servers but never
returned as answers: only the zone's own servers may answer for its names.

Delegations are no special structure: a referral's NS RRset is cached at the child zone's name
and its glue as A/AAAA RRsets, so "the closest known zone cut" is the nearest ancestor that has
a cached NS RRset, and "its servers' addresses" are cached address RRsets.  Deciding what may be
stored at all (bailiwick) is the job of :mod:`netlab.proto.dns_response`, before data gets here.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass

import dnslib

from netlab.proto.dns_rrset import Name, RRset, negative_ttl

__all__ = ["CacheHit", "CacheStats", "DnsCache", "HitKind", "Rank", "TimedRRset"]

RCODE = dnslib.RCODE
QTYPE_CNAME = dnslib.QTYPE.CNAME
QTYPE_NS = dnslib.QTYPE.NS
_NAME_ERROR = 0  # key type of an NXDOMAIN entry: RR type 0 is reserved, so nothing else uses it

DEFAULT_MAX_ENTRIES = 200_000
DEFAULT_MAX_TTL = 86_400  # seconds; no record is trusted for more than a day
DEFAULT_MAX_NEGATIVE_TTL = 3_600  # seconds; RFC 2308 section 5 suggests one to three hours


class Rank(enum.IntEnum):
    """Where cached data came from, least trustworthy first (RFC 2181 section 5.4.1)."""

    GLUE = 1  # additional section of a referral
    REFERRAL = 2  # authority section of a non-authoritative answer (a referral's NS records)
    NONAUTH_ANSWER = 3  # answer section of a non-authoritative answer
    AUTHORITY = 4  # authority section of an authoritative answer
    ANSWER = 5  # answer section of an authoritative answer


#: Data of these ranks may be returned to clients as answers; RFC 2181 section 5.4.1 forbids
#: it for the two lowest.
ANSWER_RANKS = (Rank.NONAUTH_ANSWER, Rank.AUTHORITY, Rank.ANSWER)


class HitKind(enum.Enum):
    ANSWER = "answer"  # the RRset asked for
    CNAME = "cname"  # the name is an alias: follow ``rrset`` and look again
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists but has no records of the type


@dataclass(frozen=True, slots=True)
class TimedRRset:
    """An RRset and the time it expires, so that answers can count its TTL down."""

    rrset: RRset
    expires: float

    def records(self, now: float) -> list[dnslib.RR]:
        """Copies of the records carrying the TTL that is left at ``now``."""
        # Rounded up: a record received 30 ms ago with TTL 120 still says 120, never more.
        ttl = max(0, math.ceil(self.expires - now))
        return [dnslib.RR(rr.rname, rr.rtype, rr.rclass, ttl, rr.rdata) for rr in self.rrset.records]


@dataclass(frozen=True, slots=True)
class CacheHit:
    kind: HitKind
    #: The answer or CNAME RRset; for NXDOMAIN and NODATA the SOA, if there was one.
    data: TimedRRset | None

    def outcome(self) -> tuple[int, TimedRRset | None, TimedRRset | None]:
        """(RCODE, final RRset, SOA) of a hit that ends a search (not a CNAME)."""
        if self.kind is HitKind.ANSWER:
            return RCODE.NOERROR, self.data, None
        return (RCODE.NXDOMAIN if self.kind is HitKind.NXDOMAIN else RCODE.NOERROR), None, self.data


@dataclass(slots=True)
class _Positive:
    rrset: RRset
    expires: float
    rank: Rank


@dataclass(slots=True)
class _Negative:
    soa: RRset | None
    expires: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    evicted: int = 0
    kept_better: int = 0  # lower-ranked data not stored over live higher-ranked data


class DnsCache:
    """A size-bounded LRU cache of RRsets and negative answers.

    Args:
        max_entries: the bound on stored entries (RRsets plus negative answers); 0 disables caching.
        max_ttl: the longest any RRset is kept (seconds).
        max_negative_ttl: the longest a negative answer is kept (seconds).
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        max_ttl: int = DEFAULT_MAX_TTL,
        max_negative_ttl: int = DEFAULT_MAX_NEGATIVE_TTL,
    ) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.stats = CacheStats()
        self._entries: OrderedDict[tuple[Name, int], _Positive | _Negative] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    # -- storing ---------------------------------------------------------------------------

    def store(self, rrset: RRset, rank: Rank, now: float) -> TimedRRset:
        """Cache ``rrset`` (TTL capped) unless live data of a higher rank is already there.

        Returns the RRset with its expiry time, for the answer being built; a TTL of 0 means
        "use once, do not cache" (RFC 1035 section 3.2.1).
        """
        timed = TimedRRset(rrset, now + min(rrset.ttl, self.max_ttl))
        if rrset.ttl <= 0 or self.max_entries <= 0:
            return timed
        key = (rrset.name, rrset.rtype)
        old = self._entries.get(key)
        if isinstance(old, _Positive) and old.expires > now and old.rank > rank:
            self.stats.kept_better += 1
            return timed
        if rank in ANSWER_RANKS:
            # The name exists after all (the zone changed): forget an older "no such name".
            self._entries.pop((rrset.name, _NAME_ERROR), None)
        self._put(key, _Positive(rrset, timed.expires, rank))
        return timed

    def store_negative(
        self, name: Name, rtype: int | None, soa: RRset | None, now: float
    ) -> TimedRRset | None:
        """Cache "no such name" (``rtype`` None) or "no data of ``rtype``" (RFC 2308).

        The entry lives for min(SOA TTL, SOA MINIMUM), capped (RFC 2308 section 5).  Without an
        SOA nothing is cached (RFC 2308 section 5: such answers SHOULD NOT be cached).

        Returns the SOA with the negative TTL as its expiry, for the authority section.
        """
        if soa is None:
            return None
        ttl = min(negative_ttl(soa), self.max_negative_ttl)
        expires = now + ttl
        if ttl > 0 and self.max_entries > 0:
            self._put((name, _NAME_ERROR if rtype is None else rtype), _Negative(soa, expires))
        return TimedRRset(soa, expires)

    def _put(self, key: tuple[Name, int], entry: _Positive | _Negative) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self.stats.stored += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.stats.evicted += 1

    # -- reading ---------------------------------------------------------------------------

    def _get(self, key: tuple[Name, int], now: float) -> _Positive | _Negative | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def lookup(self, name: Name, rtype: int, now: float) -> CacheHit | None:
        """What the cache can answer about ``name``/``rtype``, or None if the servers must be asked."""
        hit = self._lookup(name, rtype, now)
        if hit is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return hit

    def _lookup(self, name: Name, rtype: int, now: float) -> CacheHit | None:
        nxdomain = self._get((name, _NAME_ERROR), now)
        if isinstance(nxdomain, _Negative):
            return CacheHit(
                HitKind.NXDOMAIN, TimedRRset(nxdomain.soa, nxdomain.expires) if nxdomain.soa else None
            )
        entry = self._get((name, rtype), now)
        if isinstance(entry, _Negative):
            return CacheHit(HitKind.NODATA, TimedRRset(entry.soa, entry.expires) if entry.soa else None)
        if entry is not None and entry.rank in ANSWER_RANKS:
            return CacheHit(HitKind.ANSWER, TimedRRset(entry.rrset, entry.expires))
        if rtype != QTYPE_CNAME:
            alias = self._get((name, QTYPE_CNAME), now)
            if isinstance(alias, _Positive) and alias.rank in ANSWER_RANKS:
                return CacheHit(HitKind.CNAME, TimedRRset(alias.rrset, alias.expires))
        return None

    def follow(
        self, name: Name, rtype: int, seen: set[Name], max_chain: int, now: float
    ) -> tuple[list[TimedRRset], CacheHit | None, Name, bool]:
        """Follow cached CNAMEs from ``name`` (adding each target to ``seen``).

        Returns:
            The CNAMEs followed, the hit at the end (None: ask the servers), the last name, and
            False if the chain looped back into ``seen`` or grew longer than ``max_chain``.
        """
        chain: list[TimedRRset] = []
        for _ in range(max_chain + 1):
            hit = self.lookup(name, rtype, now)
            if hit is None or hit.kind is not HitKind.CNAME or hit.data is None:
                return chain, hit, name, True
            chain.append(hit.data)
            name = hit.data.rrset.targets()[0]
            if name in seen:
                return chain, hit, name, False
            seen.add(name)
        return chain, None, name, False

    def rrset(self, name: Name, rtype: int, now: float) -> TimedRRset | None:
        """A live RRset of any rank (for finding servers, not for answering)."""
        entry = self._get((name, rtype), now)
        return TimedRRset(entry.rrset, entry.expires) if isinstance(entry, _Positive) else None

    def delegation(self, name: Name, now: float) -> RRset | None:
        """The NS RRset of the closest zone cut at or above ``name`` that the cache knows."""
        for i in range(len(name) + 1):
            ns = self.rrset(name[i:], QTYPE_NS, now)
            if ns is not None:
                return ns.rrset
        return None

    def addresses(self, name: Name, rtypes: tuple[int, ...], now: float) -> list[str]:
        """Cached addresses of ``name`` (glue included) of the given types."""
        out: list[str] = []
        for rtype in rtypes:
            found = self.rrset(name, rtype, now)
            if found is not None:
                out += found.rrset.addresses()
        return out
