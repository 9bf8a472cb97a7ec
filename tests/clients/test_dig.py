"""``netlab dig``: its arguments, and output laid out as BIND's dig lays it out."""

from __future__ import annotations

import click
import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSQuestion, DNSRecord

from clients.dig import DigArgs, parse_dig_args
from clients.dig_output import format_reply, format_rr, received_line
from netlab.proto.dns_wire import make_reply


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("www.shop.test",), DigArgs(name="www.shop.test")),
        (
            ("alpha.test", "MX", "@127.0.0.11"),
            DigArgs(name="alpha.test", qtype=QTYPE.MX, server="127.0.0.11"),
        ),
        (
            ("@127.0.0.1:5300", "x.test", "aaaa"),
            DigArgs(name="x.test", qtype=QTYPE.AAAA, server="127.0.0.1", server_port=5300),
        ),
        (
            ("@[::1]:53", "x.test", "+tcp", "+norec"),
            DigArgs(name="x.test", server="::1", server_port=53, tcp=True, recurse=False),
        ),
        (("@::1", "x.test"), DigArgs(name="x.test", server="::1")),
        (("+trace", "www.beta.test"), DigArgs(name="www.beta.test", trace=True)),
        (
            ("x.test", "TYPE65", "+short", "+noedns", "+bufsize=512", "+time=1", "+tries=2"),
            DigArgs(name="x.test", qtype=65, short=True, edns=False, bufsize=512, wait=1, tries=2),
        ),
        ((), DigArgs(name=".", qtype=QTYPE.NS)),
        (("mx",), DigArgs(name="mx")),  # a lone word is a name, even if it spells a type
    ],
)
def test_arguments(words: tuple[str, ...], expected: DigArgs) -> None:
    assert parse_dig_args(words) == expected


def test_reverse_lookup() -> None:
    args = parse_dig_args(("@127.0.0.5",), reverse="127.0.0.80")
    assert (args.name, args.qtype) == ("80.0.0.127.in-addr.arpa", QTYPE.PTR)


@pytest.mark.parametrize(
    "words", [("+frobnicate", "x.test"), ("a.test", "b.test"), ("@127.0.0.1:99999", "x.test")]
)
def test_bad_arguments(words: tuple[str, ...]) -> None:
    with pytest.raises(click.UsageError):
        parse_dig_args(words)


def test_columns_match_dig() -> None:
    # Taken from BIND 9.18's dig: owners padded to column 24, question names to column 32.
    rr = RR("www.shop.test", QTYPE.A, rdata=A("127.0.0.80"), ttl=300)
    assert format_rr(rr) == "www.shop.test.\t\t300\tIN\tA\t127.0.0.80"
    assert format_rr(RR("test", QTYPE.A, rdata=A("127.0.0.1"), ttl=1)) == "test.\t\t\t1\tIN\tA\t127.0.0.1"
    query = DNSRecord(q=DNSQuestion("nope.shop.test"))
    lines = format_reply(make_reply(query))
    assert ";nope.shop.test.\t\t\tIN\tA" in lines
    assert ";www.shop.test.\t\t\tIN\tA" in format_reply(make_reply(DNSRecord(q=DNSQuestion("www.shop.test"))))


def test_reply_header_and_sections() -> None:
    reply = make_reply(DNSRecord(q=DNSQuestion("www.shop.test")))
    reply.header.id, reply.header.aa = 4242, 1
    reply.add_answer(RR("www.shop.test", QTYPE.A, rdata=A("127.0.0.80"), ttl=300))
    reply.add_ar(EDNS0(udp_len=1232))
    lines = format_reply(DNSRecord.parse(reply.pack()))
    assert lines[:4] == [
        ";; Got answer:",
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242",
        ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1",
        ";; WARNING: recursion requested but not available",
    ]
    assert "; EDNS: version: 0, flags:; udp: 1232" in lines
    assert lines[lines.index(";; ANSWER SECTION:") + 1] == "www.shop.test.\t\t300\tIN\tA\t127.0.0.80"


def test_extended_rcode_is_shown_whole() -> None:
    reply = make_reply(DNSRecord(q=DNSQuestion("x.test")))
    reply.add_ar(EDNS0(udp_len=1232, ext_rcode=1))
    assert (
        ";; ->>HEADER<<- opcode: QUERY, status: BADVERS, id: "
        in format_reply(DNSRecord.parse(reply.pack()))[1]
    )


def test_trace_step_line() -> None:
    line = received_line(80, ("127.0.0.2", 53), "a.root-servers.test", 0.0012)
    assert line == ";; Received 80 bytes from 127.0.0.2#53(a.root-servers.test) in 1 ms"


def test_long_owners_are_followed_by_a_space() -> None:
    rr = RR("_submission._tcp.alpha.test", QTYPE.A, rdata=A("127.0.0.25"), ttl=300)
    assert format_rr(rr) == "_submission._tcp.alpha.test. 300 IN\tA\t127.0.0.25"
