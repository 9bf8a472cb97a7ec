"""What ``netlab dig`` prints, laid out the way BIND's dig lays it out.

Strategy: pure functions from messages to lines, so the layout is tested without a network.
dig aligns record fields on columns 24, 32, 40 and 48 (TTL, class, type, data; a question's class
and type on 32 and 40, counted without its leading ";"), with tabs, or with one space when the
text before a field already reaches its column.
"""

from __future__ import annotations

from dnslib import CLASS, QTYPE, RR, DNSQuestion, DNSRecord

from netlab.proto.dns_wire import OPT, rcode_text

__all__ = ["format_reply", "format_rr", "format_short", "received_line"]


def _layout(fields: list[str], stops: tuple[int, ...]) -> str:
    """Fields joined the way dig joins them: tabs up to each field's column, or one space when
    the text before already reaches it."""
    out, column = fields[0], len(fields[0])
    for text, stop in zip(fields[1:], stops, strict=True):
        if column >= stop:
            out, column = out + " ", column + 1
        while column < stop:
            out, column = out + "\t", (column // 8 + 1) * 8
        out, column = out + text, column + len(text)
    return out


def format_rr(rr: RR) -> str:
    rdata = rr.rdata.toZone() if hasattr(rr.rdata, "toZone") else str(rr.rdata)
    fields = [str(rr.rname), str(rr.ttl), str(CLASS.get(rr.rclass)), str(QTYPE.get(rr.rtype)), rdata]
    return _layout(fields, (24, 32, 40, 48))


def _format_question(question: DNSQuestion) -> str:
    # dig counts columns from the name, as if the leading ";" were not there.
    fields = [str(question.qname), str(CLASS.get(question.qclass)), str(QTYPE.get(question.qtype))]
    return ";" + _layout(fields, (32, 40))


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
