"""What ``netlab dig`` prints, laid out the way BIND's dig lays it out.

Strategy: pure functions from messages to lines, so the layout is tested without a network.
dig aligns record fields with tabs: the owner name is padded with tabs to column 24 (a question
to column 32), then TTL, class, type and data, each followed by one tab.
"""

from __future__ import annotations

from dnslib import CLASS, QTYPE, RR, DNSQuestion, DNSRecord

from netlab.proto.dns_wire import OPT, rcode_text

__all__ = ["format_reply", "format_rr", "format_short", "received_line"]


def _pad(text: str, column: int) -> str:
    """``text`` followed by tabs (8 columns each) up to ``column``, or one tab if already past it."""
    tabs = max(1, -(-(column - len(text)) // 8)) if len(text) < column else 1
    return text + "\t" * tabs


def format_rr(rr: RR) -> str:
    rdata = rr.rdata.toZone() if hasattr(rr.rdata, "toZone") else str(rr.rdata)
    return f"{_pad(str(rr.rname), 24)}{rr.ttl}\t{CLASS.get(rr.rclass)}\t{QTYPE.get(rr.rtype)}\t{rdata}"


def _format_question(question: DNSQuestion) -> str:
    return f"{_pad(';' + str(question.qname), 32)}{CLASS.get(question.qclass)}\t{QTYPE.get(question.qtype)}"


def _flags(reply: DNSRecord) -> str:
    h = reply.header
    names = ("qr", "aa", "tc", "rd", "ra", "ad", "cd")
    return " ".join(n for n in names if getattr(h, n))


def format_reply(reply: DNSRecord, *, rcode: int | None = None) -> list[str]:
    """The header, OPT pseudo-section and the four sections, as dig prints them."""
    h = reply.header
    opt = next((rr for rr in reply.ar if rr.rtype == OPT), None)
    full_rcode = rcode if rcode is not None else h.rcode | ((opt.edns_rcode << 4) if opt is not None else 0)
    lines = [
        ";; Got answer:",
        f";; ->>HEADER<<- opcode: QUERY, status: {rcode_text(full_rcode)}, id: {h.id}",
        f";; flags: {_flags(reply)}; QUERY: {h.q}, ANSWER: {h.a}, AUTHORITY: {h.auth}, ADDITIONAL: {h.ar}",
    ]
    if h.rd and not h.ra:
        lines.append(";; WARNING: recursion requested but not available")
    lines.append("")
    if opt is not None:
        lines += [
            ";; OPT PSEUDOSECTION:",
            f"; EDNS: version: {opt.edns_ver}, flags:{' do' if opt.edns_do else ''}; udp: {opt.edns_len}",
        ]
    if reply.questions:
        lines += [";; QUESTION SECTION:", *(_format_question(q) for q in reply.questions), ""]
    for title, section in (("ANSWER", reply.rr), ("AUTHORITY", reply.auth), ("ADDITIONAL", reply.ar)):
        records = [rr for rr in section if rr.rtype != OPT]
        if records:
            lines += [f";; {title} SECTION:", *(format_rr(rr) for rr in records), ""]
    return lines


def format_short(reply: DNSRecord) -> list[str]:
    """``+short``: the data of the answer records only."""
    return [rr.rdata.toZone() for rr in reply.rr]


def received_line(size: int, server: tuple[str, int], name: str, rtt: float) -> str:
    """The line that closes each step of ``+trace``."""
    return f";; Received {size} bytes from {server[0]}#{server[1]}({name}) in {round(rtt * 1000)} ms"
