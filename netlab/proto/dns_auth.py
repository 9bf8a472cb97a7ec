"""The authoritative answer: RFC 1034 section 4.3.2 over the zones one server holds.

Strategy: find the zone nearest to the query name among ours (none: REFUSED, we are not a
resolver and must not look like one), then let the zone say what it knows
(:meth:`netlab.proto.dns_zone.Zone.lookup`) and turn that into a message:

* a referral, when the name is at or below a zone cut: the cut's NS RRset in the authority
  section, addresses of its in-zone name servers (glue) in the additional section, AA clear,
  because the data belongs to the child (RFC 1034 section 4.3.2 step 3b);
* an answer, AA set (RFC 1035 section 4.1.1); wildcard answers take the query name as owner
  (RFC 4592 section 3.3.1); the addresses of MX, NS and SRV targets we are authoritative for go
  in the additional section (RFC 1034 section 3.6.2, RFC 2782), and for NS targets below a cut
  the zone's glue, which is how a root server answers a priming query (RFC 8109 section 3.2);
* an alias: the CNAME goes in the answer and the lookup restarts at its target while the target
  is in one of our zones (RFC 1034 step 3a), up to :data:`MAX_CHAIN` links and never twice
  through one name; a chain that leaves our zones or reaches a cut ends there, for the resolver
  to continue from its last link;
* NXDOMAIN or NODATA (NOERROR, empty answer), with the zone's SOA in the authority section with
  the TTL RFC 2308 section 3 gives it.  After a CNAME chain the RCODE describes the chain's last
  name (RFC 6604 section 2.1) while AA describes the first (RFC 1035 section 4.1.1).

No I/O: it maps a query message to a reply message, so every case is a table-driven test.
"""

from __future__ import annotations

from collections.abc import Iterable

from dnslib import CLASS, QTYPE, RR, DNSLabel, DNSRecord

from netlab.proto.dns_wire import Rcode, make_reply, name_key
from netlab.proto.dns_zone import Key, Lookup, Outcome, RRset, Zone, ZoneError

__all__ = ["MAX_CHAIN", "Authority"]

#: CNAME links followed in one answer; longer chains are a misconfiguration, loops an attack.
MAX_CHAIN = 12

#: Zone transfers are a policy decision (RFC 5936 section 6): off, like everything not asked for.
_REFUSED_TYPES = {QTYPE.AXFR, QTYPE.IXFR}
#: Obsolete meta-types (RFC 1035 section 3.2.3) that no server implements any more.
_NOTIMP_TYPES = {253, 254}  # MAILB, MAILA


class Authority:
    """The zones a server is authoritative for, and the answers they give."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        """
        Raises:
            ZoneError: two zones with the same origin.
        """
        self.zones: dict[Key, Zone] = {}
        for zone in zones:
            if zone.key in self.zones:
                raise ZoneError(f"zone {zone.origin} is loaded twice")
            self.zones[zone.key] = zone

    def zone_for(self, key: Key) -> Zone | None:
        """The zone of ours nearest to ``key``: the one with the longest matching origin."""
        for start in range(len(key) + 1):
            zone = self.zones.get(key[start:])
            if zone is not None:
                return zone
        return None

    def answer(self, query: DNSRecord) -> DNSRecord:
        """The reply to ``query``, a message already checked to hold one question."""
        question = query.q
        reply = make_reply(query)
        if question.qclass != CLASS.IN or question.qtype in _REFUSED_TYPES:
            reply.header.rcode = Rcode.REFUSED
            return reply
        if question.qtype in _NOTIMP_TYPES:
            reply.header.rcode = Rcode.NOTIMP
            return reply
        name: DNSLabel = question.qname
        key = name_key(name)
        zone = self.zone_for(key)
        if zone is None:
            reply.header.rcode = Rcode.REFUSED
            return reply
        seen: set[Key] = set()
        for step in range(MAX_CHAIN + 1):
            seen.add(key)
            found = zone.lookup(key, question.qtype)
            if found.outcome is Outcome.REFERRAL:
                if step == 0:
                    self._referral(reply, zone, found.rrsets[0])
                return reply
            if step == 0:
                reply.header.aa = 1
            if found.outcome is Outcome.CNAME:
                (cname,) = _records(found, name)
                reply.add_answer(cname)
                name = cname.rdata.label
                key = name_key(name)
                next_zone = self.zone_for(key)
                if key in seen or next_zone is None:
                    return reply
                zone = next_zone
                continue
            if found.outcome is Outcome.ANSWER:
                answers = _records(found, name)
                reply.add_answer(*answers)
                reply.add_ar(*self._additional(answers))
            else:
                if found.outcome is Outcome.NXDOMAIN:
                    reply.header.rcode = Rcode.NXDOMAIN
                reply.add_auth(zone.negative_soa())
            return reply
        return reply

    def _referral(self, reply: DNSRecord, zone: Zone, cut: RRset) -> None:
        reply.add_auth(*cut.records())
        for ns in cut.rdata:
            target = name_key(ns.label)
            if zone.contains(target):
                for rrset in zone.addresses(target):
                    reply.add_ar(*rrset.records())

    def _additional(self, answers: list[RR]) -> list[RR]:
        """Addresses of the hosts that MX, NS and SRV records name, where we know them."""
        out: list[RR] = []
        done: set[Key] = set()
        for rr in answers:
            if rr.rtype in (QTYPE.MX, QTYPE.NS):
                target = rr.rdata.label
            elif rr.rtype == QTYPE.SRV:
                target = rr.rdata.target
            else:
                continue
            key = name_key(target)
            zone = self.zone_for(key)
            if key in done or zone is None:
                continue
            done.add(key)
            for qtype in (QTYPE.A, QTYPE.AAAA):
                found = zone.lookup(key, qtype)
                if found.outcome is Outcome.ANSWER and not found.wildcard:
                    out.extend(found.rrsets[0].records())
                elif found.outcome is Outcome.REFERRAL and rr.rtype == QTYPE.NS:
                    # A name server named below a cut (the root's a.root-servers.test under
                    # test.): the zone's glue is what a priming resolver needs (RFC 8109 3.2).
                    out.extend(
                        r for rrset in zone.addresses(key) if rrset.rtype == qtype for r in rrset.records()
                    )
        return out


def _records(found: Lookup, name: DNSLabel) -> list[RR]:
    owner = name if found.wildcard else None
    return [rr for rrset in found.rrsets for rr in rrset.records(owner)]
