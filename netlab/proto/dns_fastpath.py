"""Replaying encoded replies for questions already answered.

Strategy: an authoritative server over fixed zones gives the same reply to the same question, so
the reply's octets can be kept and sent again, as NSD does with its precompiled answers.  Three
things in a reply depend on the query rather than on the question, and are patched into the kept
octets: the message ID, the RD and CD bits (copied from the query, RFC 1035 section 4.1.1 and
RFC 4035 section 3.2.2), and the spelling of the question name, which a reply echoes octet for
octet (clients that randomise its case, as in draft-vixie-dnsext-dns0x20, compare it).  A name
compressed against the question in the kept reply then spells the name as this client did, as it
would have in a fresh reply.

Only plain queries take this path: QUERY opcode, one question with an uncompressed name, no
answer or authority records, and at most an EDNS(0) OPT record with well-formed options; the key
is the case-folded question plus everything else a reply depends on (EDNS present or not, the DO
bit, and the size limit the reply had to fit in).  Every other packet returns None from
:meth:`ReplyCache.probe` and goes the whole way through the strict decoder, so this parser only
needs to be right about what it accepts.  The cache holds at most ``max_entries`` replies and
forgets the oldest first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from netlab.proto.dns_wire import (
    DEFAULT_UDP_PAYLOAD,
    HEADER_LEN,
    MAX_LABEL,
    MAX_NAME,
    OPT,
    Edns,
    Transport,
    reply_limit,
)

__all__ = ["Probe", "ReplyCache"]

_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD=1 AN=0 NS=0 AR=0
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD=1 AN=0 NS=0 AR=1
_RD = 0x01  # in the third octet of the header
_CD = 0x10  # in the fourth octet


@dataclass(frozen=True, slots=True)
class Probe:
    """A query that qualifies for replay: its cache key and where its question name ends."""

    key: bytes
    name_end: int


class ReplyCache:
    """Encoded replies by normalised question; see the module docstring."""

    def __init__(self, max_entries: int = 10_000, *, our_payload: int = DEFAULT_UDP_PAYLOAD) -> None:
        self.max_entries = max_entries
        self.our_payload = our_payload
        self._replies: dict[bytes, bytes] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._replies)

    def probe(self, data: bytes, transport: Transport) -> Probe | None:
        """The cache key of ``data`` if it is a plain query (see the module docstring), else None."""
        size = len(data)
        # QR clear and opcode QUERY (the top five bits of octet 2), and the section counts.
        if size < HEADER_LEN + 5 or data[2] & 0xF8:
            return None
        counts = data[4:12]
        if counts != _COUNTS_PLAIN and counts != _COUNTS_EDNS:
            return None
        pos = HEADER_LEN
        while True:
            length = data[pos] if pos < size else -1
            if length == 0:
                break
            if not 0 < length <= MAX_LABEL:
                return None  # past the end, a pointer, or a reserved label type
            pos += length + 1
            if pos - HEADER_LEN >= MAX_NAME:
                return None
        name_end = pos + 1
        question_end = name_end + 4
        if question_end > size:
            return None
        if counts == _COUNTS_PLAIN:
            if question_end != size:
                return None
            edns_part, edns = b"-", None
        else:
            edns = _opt_untrusted(data, question_end)
            if edns is None:
                return None
            edns_part = b"D" if edns.do else b"E"
        limit = reply_limit(transport, edns, self.our_payload)
        key = b"".join(
            (
                data[HEADER_LEN:name_end].lower(),
                data[name_end:question_end],
                edns_part,
                limit.to_bytes(2, "big"),
            )
        )
        return Probe(key, name_end)

    def replay(self, probe: Probe, data: bytes) -> bytes | None:
        """The kept reply for ``probe``, made this query's own; None if there is none."""
        kept = self._replies.get(probe.key)
        if kept is None:
            self.misses += 1
            return None
        self.hits += 1
        flags = bytes(((kept[2] & ~_RD) | (data[2] & _RD), (kept[3] & ~_CD) | (data[3] & _CD)))
        return b"".join(
            (data[0:2], flags, kept[4:HEADER_LEN], data[HEADER_LEN : probe.name_end], kept[probe.name_end :])
        )

    def put(self, probe: Probe, reply: bytes) -> None:
        """Keep ``reply``, the encoded answer to the query ``probe`` was made from."""
        if probe.key not in self._replies and len(self._replies) >= self.max_entries:
            del self._replies[next(iter(self._replies))]
        self._replies[probe.key] = reply

    def clear(self) -> None:
        self._replies.clear()


def _opt_untrusted(data: bytes, pos: int) -> Edns | None:
    """The OPT record that must make up the rest of ``data`` from ``pos``, or None."""
    # Root owner, TYPE OPT, CLASS = UDP size, TTL = extended RCODE/version/flags, RDLENGTH.
    if len(data) < pos + 11 or data[pos] != 0:
        return None
    rtype, udp_size, ext_rcode, version, flags, rdlength = struct.unpack_from("!HHBBHH", data, pos + 1)
    end = pos + 11 + rdlength
    if rtype != OPT or ext_rcode or version or end != len(data):
        return None
    # The options must tile the RDATA exactly (RFC 6891 section 6.1.2); their contents we ignore.
    at = pos + 11
    while at < end:
        if at + 4 > end:
            return None
        (length,) = struct.unpack_from("!H", data, at + 2)
        at += 4 + length
    if at != end:
        return None
    return Edns(udp_size=udp_size, version=version, do=bool(flags & 0x8000))
