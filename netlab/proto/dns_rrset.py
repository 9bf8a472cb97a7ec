"""Domain names and RRsets as the resolver keeps them.

Strategy: a domain name is a tuple of lower-cased labels, leftmost first, with the root as the
empty tuple.  DNS names compare case-insensitively (RFC 4343 section 3), so folding once on the
way in makes every later comparison, dictionary key and suffix test exact and cheap: "is ``n``
at or below ``z``" is a tuple-suffix comparison, never string surgery on dots and escapes.

An RRset (RFC 2181 section 5) is every record of one owner, type and class.  The resolver never
caches or answers single records, only whole RRsets, and gives every member the same TTL: the
smallest one received (RFC 2181 section 5.2).  dnslib stays the wire codec; its ``RR`` objects
are kept inside the RRset and copied with a fresh TTL when an answer is built.  Decoding a peer's
bytes is :func:`netlab.proto.dns_wire.parse_message_untrusted`'s job.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import dnslib

from netlab.proto.dns_wire import name_key

__all__ = [
    "ROOT",
    "Name",
    "RRset",
    "encode_query",
    "group_rrsets",
    "is_subdomain",
    "name_of",
    "negative_ttl",
    "to_label",
    "to_text",
]

Name = tuple[bytes, ...]
ROOT: Name = ()

CLASS_IN = 1
MAX_TTL = 2**31 - 1  # seconds; RFC 2181 section 8: larger values are treated as zero


def name_of(label: dnslib.DNSLabel | str) -> Name:
    """The case-folded label tuple of a dnslib label or a presentation-form name."""
    return name_key(dnslib.DNSLabel(label) if isinstance(label, str) else label)


def to_label(name: Name) -> dnslib.DNSLabel:
    return dnslib.DNSLabel(name)


def to_text(name: Name) -> str:
    """Presentation form with the trailing dot: ``www.shop.test.``, or ``.`` for the root."""
    return ".".join(part.decode("ascii", "backslashreplace") for part in name) + "." if name else "."


def is_subdomain(name: Name, ancestor: Name) -> bool:
    """True when ``name`` is ``ancestor`` or below it (every name is below the root)."""
    return len(name) >= len(ancestor) and name[len(name) - len(ancestor) :] == ancestor


@dataclass(frozen=True, slots=True)
class RRset:
    """The records of one owner name and type, all sharing the smallest TTL received."""

    name: Name
    rtype: int
    ttl: int
    records: tuple[dnslib.RR, ...]

    def targets(self) -> list[Name]:
        """The names an NS or CNAME RRset points at."""
        return [name_of(rr.rdata.label) for rr in self.records]

    def addresses(self) -> list[str]:
        """The addresses of an A or AAAA RRset, in presentation form."""
        return [str(rr.rdata) for rr in self.records]


def _clamp_ttl(ttl: int) -> int:
    # RFC 2181 section 8: a TTL with the top bit set is treated as zero.
    return ttl if 0 <= ttl <= MAX_TTL else 0


def group_rrsets(records: Iterable[dnslib.RR]) -> dict[tuple[Name, int], RRset]:
    """Gather one message section into RRsets, keyed by ``(owner, type)``, in order of appearance.

    Only class IN records are kept, and never OPT (a pseudo-record, RFC 6891 section 6.1.1).
    Duplicate records are merged, as RFC 2181 section 5 asks.
    """
    members: dict[tuple[Name, int], list[dnslib.RR]] = {}
    for rr in records:
        if rr.rclass != CLASS_IN or rr.rtype == dnslib.QTYPE.OPT:
            continue
        key = (name_of(rr.rname), rr.rtype)
        bucket = members.setdefault(key, [])
        if not any(old.rdata == rr.rdata for old in bucket):
            bucket.append(rr)
    return {
        key: RRset(key[0], key[1], min(_clamp_ttl(rr.ttl) for rr in rrs), tuple(rrs))
        for key, rrs in members.items()
    }


def negative_ttl(soa: RRset) -> int:
    """How long a negative answer may be cached: min(SOA TTL, SOA MINIMUM), RFC 2308 section 5."""
    minimum = soa.records[0].rdata.times[4]
    return min(soa.ttl, _clamp_ttl(minimum))


_OPT = 41  # the EDNS pseudo-type (RFC 6891 section 6.1.1)


def encode_query(
    msg_id: int, qname: Name, qtype: int, *, rd: bool = False, edns_payload: int | None = None
) -> bytes:
    """The wire form of a query: header, one question of class IN, and an OPT record if asked.

    Written out directly because a resolver sends one for every step: RFC 1035 section 4.1
    (header, question, labels without compression) and RFC 6891 section 6.1.2 (the OPT record:
    root owner, the UDP payload size in the class field, a zero TTL, no options).
    """
    flags = 0x0100 if rd else 0
    header = struct.pack("!6H", msg_id, flags, 1, 0, 0, 1 if edns_payload else 0)
    name = b"".join(bytes((len(label),)) + label for label in qname) + b"\x00"
    opt = b"\x00" + struct.pack("!HHIH", _OPT, edns_payload, 0, 0) if edns_payload else b""
    return header + name + struct.pack("!HH", qtype, CLASS_IN) + opt
