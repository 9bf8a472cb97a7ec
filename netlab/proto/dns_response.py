"""Reading one upstream response: what kind it is, and which of its records may be believed.

Strategy: a pure function, :func:`classify`, takes the response, the zone the server was asked
as an authority for (its *bailiwick*) and the question, and returns a :class:`Classified` that
says what happened and carries only records the resolver may use.  Everything else is dropped
here, before it can reach the cache:

* records whose owner is outside the zone the server serves (a server for ``shop.test`` has
  nothing to say about ``bank.test``: that is how cache poisoning works, RFC 5452 section 6);
* answer records that are not on the CNAME chain from the question (RFC 2181 section 5.4.1);
* glue that is not for one of the delegated name servers, or lies outside the zone;
* referrals that do not lead strictly downwards towards the name asked (upward or sideways
  referrals are a sign of a lame server, RFC 4697 section 2.2).

The kinds follow the response categories of RFC 1034 section 5.3.3 step 4 and RFC 2308
section 2: an answer, a CNAME to follow elsewhere, a name error, "no data", a referral, and the
failures.  The borderline cases are decided the way unbound decides them, so that both
resolvers give clients the same answers:

* an answer without AA is still an answer (RFC 1034 section 5.3.3 asks for none), but ranks
  below authoritative data (RFC 2181 section 5.4.1), which ``authoritative`` records;
* an NS RRset for the very zone asked, with no answer and no SOA, is "no data" (RFC 2308
  section 2.2.1 allows an authority section without an SOA), while NS records for a zone
  *above* it are an upward referral: the server is lame (RFC 4697 section 2.2);
* a server that offers recursion (RA) but gives no authoritative data is a recursive resolver
  standing in for an authority: lame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import dnslib

from netlab.proto.dns_rrset import Name, RRset, group_rrsets, is_subdomain

__all__ = ["Classified", "Kind", "Referral", "classify"]

QTYPE = dnslib.QTYPE
RCODE = dnslib.RCODE
ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
MAX_CHAIN_IN_RESPONSE = 16  # CNAMEs followed inside one response; more is a loop or abuse


class Kind(enum.Enum):
    ANSWER = "answer"  # the records asked for (perhaps behind in-zone CNAMEs)
    CNAME = "cname"  # a CNAME chain that leaves the server's zone: ask again for ``next_name``
    NXDOMAIN = "nxdomain"  # the (last) name does not exist
    NODATA = "nodata"  # the (last) name exists, without records of the type
    REFERRAL = "referral"  # go and ask the servers of a zone further down
    LAME = "lame"  # the server is not authoritative for the zone after all
    SERVER_FAILURE = "server_failure"  # SERVFAIL, or a message we cannot use
    NO_EDNS = "no_edns"  # FORMERR/NOTIMP: perhaps the OPT record upset it (RFC 6891 section 7)


@dataclass(frozen=True, slots=True)
class Referral:
    """A delegation to ``zone``: its NS RRset and the in-bailiwick glue for its servers."""

    zone: Name
    ns: RRset
    glue: tuple[RRset, ...]


@dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    #: The CNAMEs followed and then the RRset asked for, in chain order (all in bailiwick).
    answer: tuple[RRset, ...] = ()
    #: For CNAME, NXDOMAIN and NODATA: the last name of the chain (the one the rcode is about).
    next_name: Name | None = None
    #: For NXDOMAIN and NODATA: the zone's SOA from the authority section, if it was usable.
    soa: RRset | None = None
    referral: Referral | None = None
    #: For an answer of NS records (priming, or a zone's own NS RRset): in-bailiwick addresses
    #: of those servers from the additional section.
    glue: tuple[RRset, ...] = ()
    #: AA was set: the answer ranks as authoritative data (RFC 2181 section 5.4.1).
    authoritative: bool = True
    #: How many records were thrown away as out of bailiwick or unrelated (for the counters).
    dropped: int = 0


def classify(reply: dnslib.DNSRecord, zone: Name, qname: Name, qtype: int, *, edns_sent: bool) -> Classified:
    """Sort a response from a server of ``zone`` to the question ``qname``/``qtype``.

    The caller has already checked that the response matches the query (ID, source, question).
    """
    rcode = reply.header.rcode
    if rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        if rcode in (RCODE.FORMERR, RCODE.NOTIMP) and edns_sent:
            return Classified(Kind.NO_EDNS)
        if rcode == RCODE.SERVFAIL:
            return Classified(Kind.SERVER_FAILURE)
        # REFUSED, NOTAUTH, FORMERR without EDNS...: this server will not serve the zone.
        return Classified(Kind.LAME)

    answers = group_rrsets(reply.rr)
    in_zone = {key: rrset for key, rrset in answers.items() if is_subdomain(rrset.name, zone)}
    dropped = len(answers) - len(in_zone)
    chain, final, last = _follow_chain(in_zone, qname, qtype)
    dropped += len(in_zone) - len(chain) - (1 if final else 0) if qtype != QTYPE.ANY else 0
    aa = bool(reply.header.aa)
    # A recursive server answering for a zone it does not hold (RA set, AA clear, no data).
    recursive_lame = bool(reply.header.ra) and not aa

    if final is not None or chain:
        if final is not None:
            glue = _glue(group_rrsets(reply.ar), final, zone) if final.rtype == QTYPE.NS else ()
            answer = (*chain, final)
            return Classified(
                Kind.ANSWER, answer, next_name=last, glue=glue, authoritative=aa, dropped=dropped
            )
        # The chain stopped at ``last``: this server may say why (name error or no data for
        # it, or a referral towards it), or ``last`` lies in another zone entirely.
        return _after_chain(reply, zone, chain, last, rcode, aa, dropped)

    authority = group_rrsets(reply.auth)
    soa = _negative_soa(authority, zone, qname)
    if rcode == RCODE.NXDOMAIN or soa is not None:
        if recursive_lame:
            return Classified(Kind.LAME, dropped=dropped)
        kind = Kind.NXDOMAIN if rcode == RCODE.NXDOMAIN else Kind.NODATA
        return Classified(kind, next_name=qname, soa=soa, authoritative=aa, dropped=dropped)
    if not aa:
        for (owner, rtype), _ns in authority.items():
            if rtype == QTYPE.NS and owner != zone and is_subdomain(zone, owner):
                return Classified(Kind.LAME, dropped=dropped)  # an upward referral
        referral = _referral(authority, group_rrsets(reply.ar), zone, qname)
        if referral is not None:
            return Classified(Kind.REFERRAL, referral=referral, dropped=dropped)
        if recursive_lame:
            return Classified(Kind.LAME, dropped=dropped)
    # No data: with AA, or without it but with nothing else to go on (RFC 2308 type 3).
    return Classified(Kind.NODATA, next_name=qname, authoritative=aa, dropped=dropped)


def _follow_chain(
    rrsets: dict[tuple[Name, int], RRset], qname: Name, qtype: int
) -> tuple[tuple[RRset, ...], RRset | None, Name]:
    """The CNAMEs from ``qname`` onwards, the RRset asked for at the end (if present), and the last name."""
    chain: list[RRset] = []
    seen = {qname}
    current = qname
    for _ in range(MAX_CHAIN_IN_RESPONSE):
        if qtype == QTYPE.ANY:
            # ANY (RFC 8482): whatever RRsets the server chose to send for the name.
            found = [rrset for (owner, _t), rrset in rrsets.items() if owner == current]
            if found:
                records = tuple(rr for rrset in found for rr in rrset.records)
                return tuple(chain), RRset(current, qtype, min(r.ttl for r in found), records), current
            return tuple(chain), None, current
        final = rrsets.get((current, qtype))
        if final is not None:
            return tuple(chain), final, current
        cname = rrsets.get((current, QTYPE.CNAME))
        if cname is None or len(cname.records) != 1:  # RFC 2181 section 10.1: one CNAME per name
            break
        chain.append(cname)
        current = cname.targets()[0]
        if current in seen:  # a loop inside the response: stop where it closes
            break
        seen.add(current)
    return tuple(chain), None, current


def _after_chain(
    reply: dnslib.DNSRecord,
    zone: Name,
    chain: tuple[RRset, ...],
    last: Name,
    rcode: int,
    aa: bool,
    dropped: int,
) -> Classified:
    authority = group_rrsets(reply.auth)
    if is_subdomain(last, zone):
        soa = _negative_soa(authority, zone, last)
        if soa is not None:
            # The server spoke with authority about the chain's end: accept the rcode for it
            # (RFC 6604: the RCODE describes the last name of the chain).
            kind = Kind.NXDOMAIN if rcode == RCODE.NXDOMAIN else Kind.NODATA
            return Classified(kind, chain, next_name=last, soa=soa, authoritative=aa, dropped=dropped)
        referral = _referral(authority, group_rrsets(reply.ar), zone, last)
        if referral is not None:
            return Classified(
                Kind.CNAME, chain, next_name=last, referral=referral, authoritative=aa, dropped=dropped
            )
    return Classified(Kind.CNAME, chain, next_name=last, authoritative=aa, dropped=dropped)


def _negative_soa(authority: dict[tuple[Name, int], RRset], zone: Name, name: Name) -> RRset | None:
    """The SOA of a negative answer, if it is the SOA of a zone in bailiwick that holds ``name``."""
    for (owner, rtype), rrset in authority.items():
        if rtype == QTYPE.SOA and is_subdomain(owner, zone) and is_subdomain(name, owner):
            return rrset
    return None


def _referral(
    authority: dict[tuple[Name, int], RRset],
    additional: dict[tuple[Name, int], RRset],
    zone: Name,
    qname: Name,
) -> Referral | None:
    """A delegation strictly below ``zone`` towards ``qname``, with its usable glue."""
    for (owner, rtype), ns in authority.items():
        # Downwards only: the child must be below the zone we asked and at or above the name.
        if rtype == QTYPE.NS and owner != zone and is_subdomain(owner, zone) and is_subdomain(qname, owner):
            return Referral(owner, ns, _glue(additional, ns, zone))
    return None


def _glue(additional: dict[tuple[Name, int], RRset], ns: RRset, zone: Name) -> tuple[RRset, ...]:
    """Addresses of ``ns``'s targets from the additional section, if they lie inside ``zone``."""
    targets = set(ns.targets())
    return tuple(
        rrset
        for (name, rtype), rrset in additional.items()
        if rtype in ADDRESS_TYPES and name in targets and is_subdomain(name, zone)
    )
