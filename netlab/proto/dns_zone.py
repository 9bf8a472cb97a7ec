"""Zones: standard master files, read with dnspython and indexed for RFC 1034 lookups.

Strategy: dnspython parses the master file (RFC 1035 section 5: ``$ORIGIN``, ``$TTL``, ``@``,
relative names, parenthesised multi-line records), because a zone-file parser is exactly the kind
of well-kept code not to write again.  Every RRset is then turned into dnslib RDATA (the codec the
servers answer with) and indexed by case-folded name.  Besides the records, the index keeps the
set of names that *exist* (RFC 4592 section 2.2.2): every owner and every ancestor of an owner up
to the apex, so that empty non-terminals exist too, and the zone cuts (non-apex NS RRsets).

:meth:`Zone.lookup` is RFC 1034 section 4.3.2 step 3 for one zone: walk down from the apex one
label at a time; a cut on the way means a referral; a missing name means the closest encloser has
been found and only its wildcard child ``*.<encloser>`` may answer (RFC 4592 section 3.3.1), so an
empty non-terminal blocks a wildcard above it.  The caller (``dns_auth``) chases CNAMEs and builds
the message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.zone
from dnslib import CLASS, QTYPE, RR, DNSLabel

from netlab.proto.dns_wire import RemoteProtocolError, name_key, rdata_from_wire

__all__ = [
    "Key",
    "Lookup",
    "Outcome",
    "RRset",
    "Zone",
    "ZoneError",
    "origin_from_filename",
    "parse_zone_text",
]

Key = tuple[bytes, ...]  # a name's labels, case-folded, leftmost first (as in DNSLabel.label)

SOA, NS, CNAME, DS, ANY = QTYPE.SOA, QTYPE.NS, QTYPE.CNAME, QTYPE.DS, QTYPE.ANY
#: Types that may share a name with a CNAME (RFC 2181 section 10.1, RFC 4035 section 2.5).
_CNAME_COMPANIONS = {QTYPE.RRSIG, QTYPE.NSEC}


class ZoneError(ValueError):
    """A zone file that cannot be served; the text says where and why."""


@dataclass(frozen=True)
class RRset:
    """The records of one name and type (RFC 2181 section 5), RDATA as dnslib objects."""

    name: DNSLabel
    rtype: int
    ttl: int
    rdata: tuple[Any, ...]

    def records(self, owner: DNSLabel | None = None) -> list[RR]:
        """The records as dnslib RRs; ``owner`` replaces the owner (wildcard synthesis)."""
        name = self.name if owner is None else owner
        return [RR(name, self.rtype, CLASS.IN, self.ttl, rd) for rd in self.rdata]


class Outcome(enum.Enum):
    ANSWER = "answer"  # RRsets of the type asked for (or every type, for ANY)
    CNAME = "cname"  # the name is an alias: the CNAME RRset, to be chased
    NODATA = "nodata"  # the name exists, the type does not (RFC 2308 section 2.2)
    NXDOMAIN = "nxdomain"  # the name does not exist (RFC 2308 section 2.1)
    REFERRAL = "referral"  # the name is at or below a zone cut: the cut's NS RRset


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    rrsets: tuple[RRset, ...] = ()
    #: Synthesised from a wildcard (RFC 4592): the records' owner must become the query name.
    wildcard: bool = False


class Zone:
    """One zone's records, indexed for :meth:`lookup`."""

    def __init__(self, origin: DNSLabel, rrsets: Iterable[RRset]) -> None:
        """Index ``rrsets`` (all at or below ``origin``).

        Raises:
            ZoneError: no single SOA at the apex, no NS at the apex, a name outside the zone, or
                a CNAME sharing its name with other data (RFC 2181 section 10.1).
        """
        self.origin = origin
        self.key: Key = name_key(origin)
        self.nodes: dict[Key, dict[int, RRset]] = {}
        self._names: set[Key] = {self.key}
        self._cuts: dict[Key, RRset] = {}
        depth = len(self.key)
        for rrset in rrsets:
            key = name_key(rrset.name)
            if key[len(key) - depth :] != self.key:
                raise ZoneError(f"{rrset.name} is outside the zone {origin}")
            node = self.nodes.setdefault(key, {})
            if rrset.rtype in node:
                raise ZoneError(f"two {QTYPE.get(rrset.rtype)} RRsets at {rrset.name}")
            node[rrset.rtype] = rrset
            for i in range(len(key) - depth + 1):
                self._names.add(key[i:])
        apex = self.nodes.get(self.key, {})
        if SOA not in apex or len(apex[SOA].rdata) != 1:
            raise ZoneError(f"zone {origin} needs exactly one SOA record at its apex")
        if NS not in apex:
            raise ZoneError(f"zone {origin} has no NS records at its apex")
        self.soa = apex[SOA]
        for key, node in self.nodes.items():
            if CNAME in node and set(node) - {CNAME} - _CNAME_COMPANIONS:
                raise ZoneError(f"{node[CNAME].name} has a CNAME and other data (RFC 2181 section 10.1)")
            if NS in node and key != self.key:
                self._cuts[key] = node[NS]

    def __repr__(self) -> str:
        return f"<Zone {self.origin} {len(self.nodes)} names>"

    def negative_soa(self) -> RR:
        """The SOA for a negative answer; its TTL caps how long the answer is cached (RFC 2308 sec. 3)."""
        (soa,) = self.soa.rdata
        minimum = soa.times[4]
        return RR(self.soa.name, SOA, CLASS.IN, min(self.soa.ttl, minimum), soa)

    def contains(self, key: Key) -> bool:
        """Whether ``key`` is at or below this zone's apex (it may still be below a cut)."""
        return key[len(key) - len(self.key) :] == self.key if len(key) >= len(self.key) else False

    def addresses(self, key: Key) -> list[RRset]:
        """The A and AAAA RRsets at ``key``, even below a cut: that is glue (RFC 1034 4.2.1)."""
        node = self.nodes.get(key, {})
        return [node[t] for t in (QTYPE.A, QTYPE.AAAA) if t in node]

    def lookup(self, key: Key, qtype: int) -> Lookup:
        """What this zone says about ``key`` (at or below the apex) and ``qtype``."""
        # RFC 1034 section 4.3.2 step 3: match down from the apex, one label at a time.
        for start in range(len(key) - len(self.key) - 1, -1, -1):
            here = key[start:]
            if here not in self._names:
                # ``here[1:]`` is the closest encloser: only its wildcard may answer.
                return self._wildcard(here[1:], qtype)
            cut = self._cuts.get(here)
            # DS lives on the parent side of a cut (RFC 4035 section 2.4), all else below it.
            if cut is not None and not (start == 0 and qtype == DS):
                return Lookup(Outcome.REFERRAL, (cut,))
        node = self.nodes.get(key)
        if node is None:
            return Lookup(Outcome.NODATA)  # an empty non-terminal
        return _at_node(node, qtype, wildcard=False)

    def _wildcard(self, encloser: Key, qtype: int) -> Lookup:
        node = self.nodes.get((b"*", *encloser))
        if node is None:
            return Lookup(Outcome.NXDOMAIN)
        return _at_node(node, qtype, wildcard=True)


def _at_node(node: Mapping[int, RRset], qtype: int, *, wildcard: bool) -> Lookup:
    if qtype == ANY:
        return Lookup(Outcome.ANSWER, tuple(node[t] for t in sorted(node)), wildcard)
    if qtype in node:
        return Lookup(Outcome.ANSWER, (node[qtype],), wildcard)
    if CNAME in node:
        return Lookup(Outcome.CNAME, (node[CNAME],), wildcard)
    return Lookup(Outcome.NODATA, (), wildcard)


def parse_zone_text(text: str, *, origin: str | None = None, filename: str = "<zone>") -> Zone:
    """Parse a master file (RFC 1035 section 5) into a :class:`Zone`.

    Args:
        text: the file's contents.
        origin: the zone's name when the file has no ``$ORIGIN`` before its first relative name.
        filename: for error messages.

    Raises:
        ZoneError: the file does not parse, or does not make a servable zone.
    """
    try:
        parsed = dns.zone.from_text(
            text, origin=origin, relativize=False, filename=filename, check_origin=False
        )
    except dns.zone.UnknownOrigin:
        raise ZoneError(f"{filename}: no $ORIGIN and no origin given") from None
    except dns.exception.DNSException as exc:
        raise ZoneError(f"{filename}: {exc}") from None
    assert parsed.origin is not None  # from_text raises UnknownOrigin otherwise
    if parsed.rdclass != dns.rdataclass.IN:
        raise ZoneError(f"{filename}: only class IN is served")
    rrsets = []
    try:
        for name, rdataset in parsed.iterate_rdatasets():
            owner = _label(name)
            rdata = tuple(rdata_from_wire(rdataset.rdtype, rd.to_wire()) for rd in rdataset)
            rrsets.append(RRset(owner, int(rdataset.rdtype), rdataset.ttl, rdata))
        return Zone(_label(parsed.origin), rrsets)
    except (ZoneError, RemoteProtocolError) as exc:
        raise ZoneError(f"{filename}: {exc}") from None


def _label(name: dns.name.Name) -> DNSLabel:
    return DNSLabel(list(name.labels[:-1]))


def origin_from_filename(filename: str) -> str:
    """A zone's name from its file's name: ``alpha.test.zone`` -> ``alpha.test.``, ``root.zone`` -> ``.``."""
    base = filename.rsplit("/", 1)[-1]
    for suffix in (".zone", ".db"):
        base = base.removesuffix(suffix)
    return "." if base in ("root", "") else base.rstrip(".") + "."
