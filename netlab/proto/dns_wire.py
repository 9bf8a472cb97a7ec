"""DNS messages on the wire: strict decoding of peer bytes, EDNS(0), and replies that fit.

Strategy: dnslib is the codec, but it trusts its input more than a server may.  Measured on
dnslib 0.9.26 (``tests/proto/test_dns_wire.py`` pins each case):

* a chain of backward compression pointers recurses once per pointer, so a 40 kB message blows
  Python's recursion limit (``RecursionError``, which no ``except DNSError`` catches);
* length octets 0x40-0xBF (the extended and reserved label types of RFC 6891 section 5 and RFC
  1035 section 4.1.4) are read as label lengths of 64-191 octets;
* names longer than 255 octets (RFC 1035 section 2.3.4) are accepted;
* bytes after the last record are ignored.

So :func:`parse_message_untrusted` runs dnslib's own section parsers over a buffer whose name
decoder is ours: iterative, every pointer must point before the start of the name segment that
holds it (so a loop cannot exist), at most 127 pointer hops per name (so a long chain that many
names point into cannot cost quadratic time), labels of at most 63 octets
with the two reserved type bits clear, at most 255 octets per name, and binary label octets
allowed (RFC 2181 section 11).  Any failure to decode peer bytes becomes a
:class:`RemoteProtocolError` carrying the RCODE to answer with (FORMERR) and, when the 12-octet
header was readable, that header, so the caller can reply; without a header it can only drop.

The other half is the way back: :func:`encode_reply` adds our OPT record (RFC 6891 section 6.1.1),
splits extended RCODEs between the header and the OPT, and makes the reply fit the size the
client can take, truncating whole sections as RFC 2181 section 9 asks, never a partial RRset.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.buffer import BufferError
from dnslib.dns import RD, RDMAP
from dnslib.label import DNSBuffer

__all__ = [
    "DEFAULT_UDP_PAYLOAD",
    "HEADER_LEN",
    "MAX_LABEL",
    "MAX_NAME",
    "MIN_UDP_PAYLOAD",
    "DnsError",
    "Edns",
    "LocalProtocolError",
    "Rcode",
    "RemoteProtocolError",
    "Transport",
    "check_query",
    "describe_question",
    "edns_of",
    "encode_reply",
    "error_reply",
    "make_reply",
    "name_key",
    "parse_message_untrusted",
    "rcode_text",
    "read_header_untrusted",
    "reply_limit",
]

HEADER_LEN = 12  # octets, RFC 1035 section 4.1.1
MAX_LABEL = 63  # octets, RFC 1035 section 2.3.4
MAX_NAME = 255  # octets in wire form, RFC 1035 section 2.3.4
MIN_UDP_PAYLOAD = 512  # octets: plain DNS over UDP, and the floor for an EDNS size (RFC 6891 6.2.5)
#: Our EDNS UDP payload size: what fits in an IPv6 minimum-MTU packet without fragmentation
#: (1280 - 40 - 8), the value of the 2020 DNS flag day.
DEFAULT_UDP_PAYLOAD = 1232
MAX_TCP_MESSAGE = 65535  # octets: the two-octet length prefix of RFC 1035 section 4.2.2
OPT = 41
#: A name has at most 127 labels, and an encoder has no reason to chain pointers to pointers, so
#: more hops than that is an attack on our CPU (a long chain that many names point into).
MAX_POINTER_HOPS = 127


class Rcode(enum.IntEnum):
    """Response codes (RFC 1035 section 4.1.1, RFC 6891 section 9 for the extended ones)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    NOTAUTH = 9
    BADVERS = 16  # needs EDNS: 12 bits, the upper 8 in the OPT record


class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


class DnsError(Exception):
    """Base of the DNS protocol errors."""


class LocalProtocolError(DnsError):
    """We misused the API (a reply that cannot be encoded, say)."""


class RemoteProtocolError(DnsError):
    """The peer sent something we cannot accept.

    Attributes:
        rcode: what to answer with.
        header: the peer's header if it was readable (no header: no reply is possible).
        question: the question if it was readable, to echo in the error reply.
        edns: the peer's EDNS parameters if its OPT record was readable.
    """

    def __init__(
        self,
        message: str,
        *,
        rcode: Rcode = Rcode.FORMERR,
        header: DNSHeader | None = None,
        question: DNSQuestion | None = None,
        edns: Edns | None = None,
    ) -> None:
        super().__init__(message)
        self.rcode = rcode
        self.header = header
        self.question = question
        self.edns = edns


@dataclass(frozen=True)
class Edns:
    """A peer's EDNS(0) parameters, from its OPT pseudo-record (RFC 6891 section 6.1.2)."""

    udp_size: int
    version: int = 0
    do: bool = False
    options: tuple[tuple[int, bytes], ...] = ()


class _StrictBuffer(DNSBuffer):  # type: ignore[misc]
    """dnslib's buffer with a name decoder that cannot loop, recurse or overrun (see module doc)."""

    data: bytearray
    offset: int

    def decode_name(self, last: int = -1) -> DNSLabel:
        data = self.data
        pos = self.offset
        segment_start = pos
        resume: int | None = None  # where parsing continues: after the first pointer, or the name
        labels: list[bytes] = []
        wire_len = 1  # the root label's length octet
        hops = 0
        while True:
            if pos >= len(data):
                raise BufferError(f"name runs past the end of the message at offset {pos}")
            length = data[pos]
            kind = length & 0xC0
            if kind == 0xC0:
                if pos + 1 >= len(data):
                    raise BufferError(f"truncated compression pointer at offset {pos}")
                pointer = ((length & 0x3F) << 8) | data[pos + 1]
                if resume is None:
                    resume = pos + 2
                # RFC 1035 section 4.1.4: a pointer refers to a *prior* occurrence of a name.
                # Requiring it to point before the segment it ends makes every jump land strictly
                # earlier than the last, so decoding always ends: no loop, no unbounded chain.
                if pointer >= segment_start:
                    raise BufferError(f"compression pointer at offset {pos} does not point backwards")
                hops += 1
                if hops > MAX_POINTER_HOPS:
                    raise BufferError(f"more than {MAX_POINTER_HOPS} compression pointers in one name")
                pos = segment_start = pointer
            elif kind:
                # 0x40 and 0x80: extended (RFC 6891 section 5, deprecated) and reserved label types.
                raise BufferError(f"label type 0x{kind:02x} at offset {pos} is not supported")
            elif length == 0:
                if resume is None:
                    resume = pos + 1
                break
            else:
                wire_len += length + 1
                if wire_len > MAX_NAME:
                    raise BufferError(f"name longer than {MAX_NAME} octets")
                end = pos + 1 + length
                if end > len(data):
                    raise BufferError(f"label runs past the end of the message at offset {pos}")
                labels.append(bytes(data[pos + 1 : end]))
                pos = end
        self.offset = resume
        return DNSLabel(labels)


def read_header_untrusted(data: bytes) -> DNSHeader | None:
    """The 12-octet header of ``data``, or None if there are fewer octets than that."""
    if len(data) < HEADER_LEN:
        return None
    return DNSHeader.parse(DNSBuffer(data[:HEADER_LEN]))


def parse_message_untrusted(data: bytes) -> DNSRecord:
    """Decode a whole message from a peer, strictly.

    Raises:
        RemoteProtocolError: the bytes are not a well-formed message (RCODE FORMERR); its
            ``header`` is set when the header could be read.
    """
    header = read_header_untrusted(data)
    if header is None:
        raise RemoteProtocolError(f"{len(data)} octets is shorter than a DNS header")
    buffer = _StrictBuffer(data)
    buffer.offset = HEADER_LEN
    questions: list[DNSQuestion] = []
    sections: tuple[list[RR], list[RR], list[RR]] = ([], [], [])
    try:
        for _ in range(header.q):
            questions.append(DNSQuestion.parse(buffer))
        for section, count in zip(sections, (header.a, header.auth, header.ar), strict=True):
            for _ in range(count):
                section.append(RR.parse(buffer))
    except Exception as exc:
        # dnslib raises DNSError, BufferError, BimapError, ValueError and more from its many
        # record parsers; whichever it is, the bytes came from the peer and the fault is theirs.
        raise RemoteProtocolError(
            f"malformed message: {exc}", header=header, question=_first(questions)
        ) from None
    if buffer.remaining():
        raise RemoteProtocolError(
            f"{buffer.remaining()} octets after the last record", header=header, question=_first(questions)
        )
    answers, authority, additional = sections
    return DNSRecord(header, questions, answers, auth=authority, ar=additional)


def rdata_from_wire(rtype: int, wire: bytes) -> Any:
    """The dnslib RDATA object for ``wire`` (uncompressed) of type ``rtype``; unknown types stay opaque.

    Raises:
        RemoteProtocolError: the RDATA is malformed for its type.
    """
    buffer = _StrictBuffer(wire)
    try:
        rdata = RDMAP.get(QTYPE.get(rtype), RD).parse(buffer, len(wire))
    except Exception as exc:  # as in parse_message_untrusted: any dnslib error
        raise RemoteProtocolError(f"malformed {QTYPE.get(rtype)} RDATA: {exc}") from None
    if buffer.remaining():
        raise RemoteProtocolError(f"{buffer.remaining()} octets after the {QTYPE.get(rtype)} RDATA")
    return rdata


def _first(questions: list[DNSQuestion]) -> DNSQuestion | None:
    return questions[0] if questions else None


def name_key(name: DNSLabel) -> tuple[bytes, ...]:
    """A name as a dictionary key: its labels, case-folded (RFC 4343: ASCII letters only)."""
    return tuple(label.lower() for label in name.label)


def edns_of(message: DNSRecord) -> Edns | None:
    """The sender's EDNS parameters, or None if it sent no OPT record.

    Raises:
        RemoteProtocolError: FORMERR for more than one OPT, an OPT outside the additional
            section, or one whose owner is not the root (RFC 6891 section 6.1.1).
    """
    header = message.header
    question = _first(message.questions)
    if any(rr.rtype == OPT for rr in (*message.rr, *message.auth)):
        raise RemoteProtocolError(
            "OPT record outside the additional section", header=header, question=question
        )
    opts = [rr for rr in message.ar if rr.rtype == OPT]
    if not opts:
        return None
    if len(opts) > 1:
        raise RemoteProtocolError("more than one OPT record", header=header, question=question)
    opt = opts[0]
    if opt.rname.label:
        raise RemoteProtocolError("OPT record owner is not the root", header=header, question=question)
    return Edns(
        udp_size=opt.rclass,
        version=(opt.ttl >> 16) & 0xFF,
        do=bool(opt.ttl & 0x8000),
        options=tuple((o.code, bytes(o.data)) for o in opt.rdata),
    )


def check_query(message: DNSRecord) -> tuple[DNSQuestion, Edns | None]:
    """Check that a decoded message is a query a server can answer; its question and EDNS.

    Raises:
        RemoteProtocolError: with the RCODE to answer: NOTIMP for opcodes other than QUERY (RFC
            1035 section 4.1.1), FORMERR unless there is exactly one question (RFC 9619) and no
            answer or authority records, BADVERS for EDNS versions above 0 (RFC 6891 6.1.3).
    """
    header = message.header
    question = _first(message.questions)
    edns = edns_of(message)
    if header.opcode != 0:
        raise RemoteProtocolError(
            f"opcode {header.opcode} not implemented", rcode=Rcode.NOTIMP, header=header, edns=edns
        )
    if header.q != 1 or question is None:
        raise RemoteProtocolError(f"{header.q} questions (must be 1)", header=header, edns=edns)
    if header.a or header.auth:
        raise RemoteProtocolError("a query with answer or authority records", header=header, edns=edns)
    if question.qtype == OPT:
        raise RemoteProtocolError("a question for the OPT pseudo-type", header=header, edns=edns)
    if edns is not None and edns.version != 0:
        raise RemoteProtocolError(
            f"EDNS version {edns.version}", rcode=Rcode.BADVERS, header=header, question=question, edns=edns
        )
    return question, edns


def make_reply(query: DNSRecord) -> DNSRecord:
    """An empty reply to ``query``: same ID, opcode and question, RD and CD copied, QR set."""
    header = DNSHeader(id=query.header.id, bitmap=0, qr=1, opcode=query.header.opcode)
    header.rd = query.header.rd
    header.cd = query.header.cd
    return DNSRecord(header, questions=list(query.questions[:1]))


def error_reply(error: RemoteProtocolError) -> DNSRecord:
    """The reply to a query that failed with ``error`` (whose ``header`` must be set)."""
    if error.header is None:
        raise LocalProtocolError("no header to reply to: the query can only be dropped")
    header = DNSHeader(id=error.header.id, bitmap=0, qr=1, opcode=error.header.opcode)
    header.rd = error.header.rd
    reply = DNSRecord(header, questions=[error.question] if error.question is not None else [])
    reply.header.rcode = int(error.rcode) & 0xF
    return reply


def reply_limit(transport: Transport, edns: Edns | None, our_payload: int = DEFAULT_UDP_PAYLOAD) -> int:
    """The largest reply the client can take (RFC 6891 section 6.2.5, RFC 1035 section 4.2)."""
    if transport is Transport.TCP:
        return MAX_TCP_MESSAGE
    if edns is None:
        return MIN_UDP_PAYLOAD
    return max(MIN_UDP_PAYLOAD, min(edns.udp_size, our_payload))


def encode_reply(
    reply: DNSRecord,
    *,
    limit: int,
    edns: Edns | None,
    rcode: int | None = None,
    our_payload: int = DEFAULT_UDP_PAYLOAD,
) -> tuple[bytes, bool]:
    """Encode ``reply`` to fit in ``limit`` octets; returns the octets and whether TC was set.

    Args:
        reply: the reply, without an OPT record (any OPT in it is replaced by ours).
        limit: see :func:`reply_limit`.
        edns: the client's EDNS parameters; an OPT record is added only if it sent one
            (RFC 6891 section 7: a responder must not send OPT to a client that did not).
        rcode: the full RCODE when it needs more than the header's 4 bits (BADVERS).
        our_payload: the UDP payload size we advertise.
    """
    reply = copy.copy(reply)
    reply.header = copy.copy(reply.header)
    if rcode is not None:
        reply.header.rcode = rcode & 0xF
    additional = [rr for rr in reply.ar if rr.rtype != OPT]
    opt: list[RR] = []
    if edns is not None:
        # Our OPT: our payload size, version 0, the RCODE's upper 8 bits (RFC 6891 6.1.3).
        ext = (rcode or 0) >> 4
        opt = [EDNS0(udp_len=our_payload, ext_rcode=ext, opts=[])]
    elif rcode is not None and rcode > 0xF:
        raise LocalProtocolError(f"RCODE {rcode} needs EDNS but the client sent no OPT")
    reply.ar = additional + opt
    wire = bytes(reply.pack())
    if len(wire) <= limit:
        return wire, False
    # RFC 2181 section 9: drop the additional section first; that alone needs no TC unless the
    # reply is a referral, whose glue the resolver needs to go on (RFC 9471 section 3).
    referral = not reply.rr and not reply.header.aa and any(rr.rtype == QTYPE.NS for rr in reply.auth)
    reply.ar = opt
    wire = bytes(reply.pack())
    if len(wire) <= limit and not (referral and additional):
        return wire, False
    # Otherwise the question alone, with TC set, so the client retries over TCP (RFC 1035 4.2.1).
    reply.rr, reply.auth = [], []
    reply.header.tc = 1
    wire = bytes(reply.pack())
    if len(wire) > limit:
        raise LocalProtocolError(f"even an empty reply ({len(wire)} octets) exceeds {limit}")
    return wire, True


def describe_question(question: DNSQuestion) -> str:
    """``name. CLASS TYPE`` as a log line shows a question."""
    return f"{question.qname} {CLASS.get(question.qclass)} {QTYPE.get(question.qtype)}"


def rcode_text(rcode: int) -> str:
    return Rcode(rcode).name if rcode in Rcode._value2member_map_ else str(RCODE.get(rcode))
