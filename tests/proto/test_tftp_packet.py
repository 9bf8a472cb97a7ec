"""The TFTP codec: every packet round-trips, and no input makes the decoder raise anything but
RemoteProtocolError carrying ERROR 4."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.tftp_packet import (
    Ack,
    Data,
    Error,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    OptionAck,
    Packet,
    RemoteProtocolError,
    Request,
    decode_packet_untrusted,
    encode,
    encode_ack,
    encode_data,
    error_name,
)

WIRE_CASES: list[tuple[Packet, bytes]] = [
    (Request(Opcode.RRQ, "a.bin", "octet"), b"\x00\x01a.bin\x00octet\x00"),
    (
        Request(Opcode.WRQ, "dir/f", "netascii", {"blksize": "1428", "tsize": "0"}),
        b"\x00\x02dir/f\x00netascii\x00blksize\x001428\x00tsize\x000\x00",
    ),
    (Data(1, b"hello"), b"\x00\x03\x00\x01hello"),
    (Data(65535, b""), b"\x00\x03\xff\xff"),
    (Ack(0), b"\x00\x04\x00\x00"),
    (Ack(513), b"\x00\x04\x02\x01"),
    (Error(ErrorCode.FILE_NOT_FOUND, "nope"), b"\x00\x05\x00\x01nope\x00"),
    (OptionAck({"windowsize": "16"}), b"\x00\x06windowsize\x0016\x00"),
]


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_encode_and_decode_match_the_rfc_layout(packet: Packet, wire: bytes) -> None:
    assert encode(packet) == wire
    assert decode_packet_untrusted(wire) == packet


def test_option_names_are_case_insensitive_and_mode_is_lowered() -> None:
    packet = decode_packet_untrusted(b"\x00\x01f\x00OCTET\x00BlkSize\x00512\x00")
    assert packet == Request(Opcode.RRQ, "f", "octet", {"blksize": "512"})


def test_a_dangling_option_name_and_repeats_are_tolerated() -> None:
    packet = decode_packet_untrusted(b"\x00\x01f\x00octet\x00tsize\x000\x00TSIZE\x009\x00blksize\x00")
    assert isinstance(packet, Request)
    assert dict(packet.options) == {"tsize": "0"}


def test_block_numbers_wrap_to_sixteen_bits() -> None:
    assert encode_data(65536, b"x") == encode_data(0, b"x")
    assert encode_ack(65537) == b"\x00\x04\x00\x01"


def test_error_message_without_its_nul_is_still_read() -> None:
    assert decode_packet_untrusted(b"\x00\x05\x00\x02denied") == Error(2, "denied")


def test_unknown_error_codes_survive() -> None:
    error = decode_packet_untrusted(b"\x00\x05\x00\x63odd\x00")
    assert error == Error(99, "odd")
    assert "99" in error_name(99)
    assert str(Error(ErrorCode.OPTION_REFUSED, "x")) == "error 8 (Option negotiation refused): x"


def test_file_names_round_trip_even_when_not_utf8() -> None:
    wire = b"\x00\x01caf\xe9\x00octet\x00"
    packet = decode_packet_untrusted(wire)
    assert isinstance(packet, Request)
    assert encode(packet) == wire


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        b"\x00\x04\x00",  # short ACK
        b"\x00\x07\x00\x00",  # unknown opcode
        b"\x00\x00\x00\x00",
        b"\x00\x01file\x00octet",  # mode not terminated
        b"\x00\x01file\x00",  # no mode
        b"\x00\x01\x00octet\x00",  # empty file name
        b"\x00\x06blksize\x00512",  # OACK value not terminated
    ],
)
def test_malformed_packets_are_refused_with_error_4(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_packet_untrusted(wire)
    assert info.value.error.code == ErrorCode.ILLEGAL_OPERATION


@given(st.binary(max_size=600))
def test_decoder_only_ever_raises_remote_protocol_error(data: bytes) -> None:
    code: int | None = None
    try:
        packet = decode_packet_untrusted(data)
    except RemoteProtocolError as exc:
        code = exc.error.code
    else:
        assert isinstance(packet, Request | Data | Ack | Error | OptionAck)
    assert code in (None, ErrorCode.ILLEGAL_OPERATION)


_char = st.characters(blacklist_characters="\0", blacklist_categories=["Cs"])
_text = st.text(_char, min_size=1, max_size=30)


@given(
    opcode=st.sampled_from([Opcode.RRQ, Opcode.WRQ]),
    filename=_text,
    mode=st.sampled_from(["octet", "netascii"]),
    options=st.dictionaries(_text.map(str.lower), _text, max_size=5),
)
def test_requests_round_trip(opcode: Opcode, filename: str, mode: str, options: dict[str, str]) -> None:
    packet = Request(opcode, filename, mode, options)
    assert decode_packet_untrusted(encode(packet)) == packet


@pytest.mark.parametrize(
    "packet",
    [
        Request(Opcode.RRQ, "a\0b", "octet"),
        Request(Opcode.RRQ, "", "octet"),
        Request(Opcode.DATA, "f", "octet"),
    ],
)
def test_encoding_refuses_what_cannot_go_on_the_wire(packet: Request) -> None:
    with pytest.raises(LocalProtocolError):
        encode(packet)
