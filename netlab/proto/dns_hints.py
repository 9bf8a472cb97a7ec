"""Root hints: the addresses a resolver starts from before it knows anything (RFC 1034 section 5.3.2).

Strategy: the hints are the root zone's NS RRset and its servers' addresses, written as a master
file (the ``named.root`` format IANA publishes).  They are only a starting point: the resolver
asks one of them for the root's current NS RRset ("priming", RFC 8109) and uses the answer from
then on, so stale hints cost nothing as long as one address still answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dnslib

from netlab.proto.dns_rrset import ROOT, Name, name_of, to_text

__all__ = ["RootHints", "parse_root_hints"]

QTYPE = dnslib.QTYPE


@dataclass(frozen=True)
class RootHints:
    """The root name servers' names and addresses."""

    servers: tuple[tuple[Name, tuple[str, ...]], ...]

    def addresses(self, *, ipv6: bool = False) -> list[str]:
        """Every IPv4 address (and IPv6 ones when ``ipv6``), in file order."""
        return [a for _name, addrs in self.servers for a in addrs if ipv6 or ":" not in a]

    def names(self) -> list[Name]:
        return [name for name, _addrs in self.servers]

    @classmethod
    def from_addresses(cls, addresses: Sequence[str], *, names: Sequence[str] | None = None) -> RootHints:
        """Hints for a private root (the lab): one server per address, named if names are given."""
        if names is not None and len(names) != len(addresses):
            raise ValueError("one name per root server address")
        labels = (
            [name_of(n) for n in names] if names else [(f"root{i}".encode(),) for i in range(len(addresses))]
        )
        return cls(tuple((label, (addr,)) for label, addr in zip(labels, addresses, strict=True)))

    def to_zone_text(self) -> str:
        """The hints as a master file (what ``parse_root_hints`` reads)."""
        lines = [f".\t3600000\tNS\t{to_text(name)}" for name, _ in self.servers]
        for name, addrs in self.servers:
            for addr in addrs:
                lines.append(f"{to_text(name)}\t3600000\t{'AAAA' if ':' in addr else 'A'}\t{addr}")
        return "\n".join(lines) + "\n"


def parse_root_hints(text: str) -> RootHints:
    """Read a hints file: the root NS RRset plus A/AAAA records for its targets.

    Raises:
        ValueError: the text is not a master file, or names no root server with an address.
    """
    try:
        records = dnslib.RR.fromZone(text)
    except Exception as exc:  # dnslib's zone parser raises bare exceptions of many types
        raise ValueError(f"cannot parse root hints: {exc}") from exc
    ns_names = [
        name_of(rr.rdata.label) for rr in records if rr.rtype == QTYPE.NS and name_of(rr.rname) == ROOT
    ]
    addresses: dict[Name, list[str]] = {}
    for rr in records:
        if rr.rtype in (QTYPE.A, QTYPE.AAAA):
            addresses.setdefault(name_of(rr.rname), []).append(str(rr.rdata))
    servers = tuple((n, tuple(addresses[n])) for n in dict.fromkeys(ns_names) if addresses.get(n))
    if not servers:
        raise ValueError("root hints name no root server with an address")
    return RootHints(servers)
