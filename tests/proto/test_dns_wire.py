"""Strict decoding of peer bytes, EDNS, and replies that fit (netlab.proto.dns_wire)."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from dnslib import NS, QTYPE, RR, TXT, A, DNSLabel, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.proto.dns_wire import (
    MAX_POINTER_HOPS,
    Edns,
    Rcode,
    RemoteProtocolError,
    Transport,
    check_query,
    encode_reply,
    error_reply,
    make_reply,
    parse_message_untrusted,
    reply_limit,
)
from tests.proto.dns_packets import (
    encode_name,
    header,
    malformed_packets,
    opt_rr,
    pointer_chain_packet,
    query_bytes,
)

Q = struct.pack("!HH", 1, 1)


# -- what dnslib does on its own: the reasons for our own name decoder --------------------------


def test_dnslib_recursion_on_a_long_pointer_chain() -> None:
    with pytest.raises(RecursionError):
        DNSRecord.parse(pointer_chain_packet(5000))


@pytest.mark.parametrize(
    "packet",
    [
        header() + b"\x40" + b"a" * 64 + b"\x00" + Q,
        header() + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00" + Q,
        header() + encode_name("a.test") + Q + b"junk",
    ],
    ids=["label-64", "name-320", "trailing-bytes"],
)
def test_dnslib_accepts_what_rfc_1035_forbids(packet: bytes) -> None:
    DNSRecord.parse(packet)


# -- our decoder -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (header() + b"\xc0\x0c" + Q, "backwards"),
        (header() + b"\xc0\x10" + Q, "backwards"),
        (header() + b"\x01a\xc0\x0e" + Q, "backwards"),
        (header() + b"\x40" + b"a" * 64 + b"\x00" + Q, "label type 0x40"),
        (header() + b"\x80" + b"a" * 128 + b"\x00" + Q, "label type 0x80"),
        (header() + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00" + Q, "longer than 255"),
        (header() + b"\x03ab", "past the end"),
        (header() + encode_name("a.test") + Q + b"junk", "after the last record"),
        (header() + encode_name("a.test") + b"\x00", "malformed"),
        (pointer_chain_packet(5000), f"more than {MAX_POINTER_HOPS}"),
    ],
)
def test_malformed_names_are_formerr_with_the_header(packet: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why) as info:
        parse_message_untrusted(packet)
    assert info.value.rcode == Rcode.FORMERR
    assert info.value.header is not None
    assert info.value.header.id == 0x1234


def test_short_packet_has_no_header() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message_untrusted(b"\x12\x34\x01")
    assert info.value.header is None


def test_limits_are_inclusive() -> None:
    # 63-octet labels and a 255-octet name are the largest legal ones.
    name = b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d" + b"d" * 61 + b"\x00"
    assert len(name) == 255
    msg = parse_message_untrusted(header() + name + Q)
    assert [len(label) for label in msg.q.qname.label] == [63, 63, 63, 61]
    # The answer owner is one more pointer into the chain.
    assert len(parse_message_untrusted(pointer_chain_packet(MAX_POINTER_HOPS - 1)).rr) == 2


def test_binary_labels_are_legal() -> None:
    # RFC 2181 section 11: any octet may appear in a label; dnslib alone insists on UTF-8.
    msg = parse_message_untrusted(header() + b"\x03\xff\xfe\xfd\x00" + Q)
    assert msg.q.qname.label == (b"\xff\xfe\xfd",)


def test_compression_is_followed() -> None:
    reply = DNSRecord.question("www.shop.test").reply()
    reply.add_answer(RR("www.shop.test", QTYPE.A, rdata=A("127.0.0.80"), ttl=60))
    wire = bytes(reply.pack())
    assert b"\xc0\x0c" in wire
    parsed = parse_message_untrusted(wire)
    assert parsed.rr[0].rname == DNSLabel("www.shop.test")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_message_untrusted(data)


# dnslib itself only reads UTF-8 labels back, so compare on host-name labels.
_label = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20
).map(str.encode)


@given(st.lists(st.lists(_label, min_size=1, max_size=4), min_size=1, max_size=5))
def test_agrees_with_dnslib_on_what_dnslib_writes(names: list[list[bytes]]) -> None:
    record = DNSRecord.question("q.test")
    for labels in names:
        record.add_answer(RR(DNSLabel(labels), QTYPE.A, rdata=A("127.0.0.1"), ttl=1))
    wire = bytes(record.pack())
    assert parse_message_untrusted(wire) == DNSRecord.parse(wire)


def test_fixed_malformed_set_never_escapes() -> None:
    for packet in malformed_packets(random.Random(7))[:500]:
        with contextlib.suppress(RemoteProtocolError):
            parse_message_untrusted(packet)


# -- queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (header(qd=0), Rcode.FORMERR),
        (header(qd=2) + encode_name("a.test") + Q + encode_name("b.test") + Q, Rcode.FORMERR),
        (header(flags=0x1000) + encode_name("a.test") + Q, Rcode.NOTIMP),
        (header(ar=1) + encode_name("a.test") + Q + opt_rr(version=1), Rcode.BADVERS),
        (header(ar=2) + encode_name("a.test") + Q + opt_rr() + opt_rr(), Rcode.FORMERR),
        (header(ar=1) + encode_name("a.test") + Q + b"\x01x\x00" + opt_rr()[1:], Rcode.FORMERR),
        (header() + encode_name("a.test") + struct.pack("!HH", 41, 1), Rcode.FORMERR),
    ],
    ids=["qdcount-0", "qdcount-2", "opcode-2", "edns-version-1", "two-opts", "opt-owner", "qtype-opt"],
)
def test_query_checks(packet: bytes, rcode: Rcode) -> None:
    msg = parse_message_untrusted(packet)
    with pytest.raises(RemoteProtocolError) as info:
        check_query(msg)
    assert info.value.rcode == rcode
    reply = error_reply(info.value)
    assert reply.header.id == 0x1234
    assert reply.header.qr == 1
    assert reply.header.rcode == rcode & 0xF


def test_check_query_returns_question_and_edns() -> None:
    msg = parse_message_untrusted(query_bytes("A.Test", 28, edns=opt_rr(udp=4096, do=True)))
    question, edns = check_query(msg)
    assert question.qname == DNSLabel("a.test")
    assert question.qtype == 28
    assert edns == Edns(udp_size=4096, version=0, do=True, options=())


def test_reply_copies_id_rd_and_question() -> None:
    query = parse_message_untrusted(query_bytes("Www.Shop.Test"))
    reply = make_reply(query)
    assert (reply.header.id, reply.header.qr, reply.header.rd, reply.header.aa) == (0x1234, 1, 1, 0)
    assert reply.q.qname.label == (b"Www", b"Shop", b"Test")


@pytest.mark.parametrize(
    ("transport", "edns", "limit"),
    [
        (Transport.UDP, None, 512),
        (Transport.UDP, Edns(4096), 1232),
        (Transport.UDP, Edns(1000), 1000),
        (Transport.UDP, Edns(100), 512),
        (Transport.TCP, None, 65535),
    ],
)
def test_reply_limit(transport: Transport, edns: Edns | None, limit: int) -> None:
    assert reply_limit(transport, edns) == limit


def _big_reply(answers: int, *, glue: int = 0, referral: bool = False) -> DNSRecord:
    reply = make_reply(DNSRecord.question("big.example", "TXT"))
    for i in range(answers):
        reply.add_answer(RR("big.example", QTYPE.TXT, rdata=TXT("x" * 200 + str(i)), ttl=60))
    if referral:
        reply.add_auth(RR("sub.example", QTYPE.NS, rdata=NS("ns.sub.example"), ttl=60))
    for i in range(glue):
        reply.add_ar(RR(f"ns{i}.sub.example", QTYPE.A, rdata=A("127.0.0.9"), ttl=60))
    return reply


def test_opt_only_when_the_client_sent_one() -> None:
    wire, tc = encode_reply(_big_reply(1), limit=512, edns=None)
    assert not tc
    assert not DNSRecord.parse(wire).ar
    wire, tc = encode_reply(_big_reply(1), limit=1232, edns=Edns(4096))
    (opt,) = DNSRecord.parse(wire).ar
    assert (opt.rtype, opt.rclass, opt.edns_ver) == (41, 1232, 0)


def test_badvers_splits_the_rcode() -> None:
    reply = make_reply(DNSRecord.question("a.test"))
    wire, _ = encode_reply(reply, limit=512, edns=Edns(512, version=1), rcode=Rcode.BADVERS)
    parsed = DNSRecord.parse(wire)
    assert parsed.header.rcode == 0
    assert parsed.ar[0].edns_rcode == 1  # 1 << 4 | 0 == 16


def test_too_large_answer_keeps_the_question_and_sets_tc() -> None:
    wire, tc = encode_reply(_big_reply(10), limit=512, edns=None)
    parsed = DNSRecord.parse(wire)
    assert tc
    assert parsed.header.tc == 1
    assert parsed.q.qname == DNSLabel("big.example")
    assert not parsed.rr
    wire, tc = encode_reply(_big_reply(10), limit=65535, edns=None)
    assert not tc
    assert len(DNSRecord.parse(wire).rr) == 10


def test_additional_records_go_first_without_tc() -> None:
    wire, tc = encode_reply(_big_reply(2, glue=40), limit=512, edns=Edns(512))
    parsed = DNSRecord.parse(wire)
    assert not tc
    assert len(parsed.rr) == 2
    assert [rr.rtype for rr in parsed.ar] == [41]


def test_a_referral_without_its_glue_is_truncated() -> None:
    wire, tc = encode_reply(_big_reply(0, glue=40, referral=True), limit=512, edns=None)
    assert tc
    assert DNSRecord.parse(wire).header.tc == 1
