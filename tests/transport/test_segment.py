"""The segment codec: round trips, and nothing corrupt, truncated or unknown gets through."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.transport.segment import (
    FLAG_SELECTIVE,
    HEADER_SIZE,
    MAX_MSS,
    Segment,
    SegmentType,
    SynOptions,
    decode_segment_untrusted,
    decode_syn_options,
    encode_segment,
    encode_syn_options,
)

u32 = st.integers(0, 2**32 - 1)
segments = st.builds(
    Segment,
    type=st.sampled_from(SegmentType),
    seq=u32,
    ack=u32,
    window=u32,
    payload=st.binary(max_size=2000),
    flags=st.just(0),
).map(lambda s: s._replace(flags=FLAG_SELECTIVE) if s.type is SegmentType.ACK and s.seq % 2 else s)


@given(segments)
def test_round_trip(segment: Segment) -> None:
    assert decode_segment_untrusted(encode_segment(segment)) == segment


def test_header_layout_is_what_the_docstring_says() -> None:
    datagram = encode_segment(Segment(SegmentType.DATA, 0x01020304, 0x05060708, 0x0A0B0C0D, b"hi"))
    assert len(datagram) == HEADER_SIZE + 2 == 22
    assert datagram[:16] == bytes.fromhex("0300000201020304050607080a0b0c0d")
    assert datagram[20:] == b"hi"
    (crc,) = struct.unpack("!I", datagram[16:20])
    assert crc == zlib.crc32(datagram[20:], zlib.crc32(datagram[:16]))


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 4])
def test_every_single_bit_flip_is_detected(payload: bytes) -> None:
    datagram = encode_segment(Segment(SegmentType.DATA, 7, 9, 32, payload))
    for bit in range(len(datagram) * 8):
        damaged = bytearray(datagram)
        damaged[bit >> 3] ^= 0x80 >> (bit & 7)
        assert decode_segment_untrusted(bytes(damaged)) is None, f"bit {bit} flip undetected"


@settings(max_examples=300)
@given(segments, st.data())
def test_every_truncation_and_extension_is_refused(segment: Segment, data: st.DataObject) -> None:
    datagram = encode_segment(segment)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    assert decode_segment_untrusted(datagram[:cut]) is None
    assert decode_segment_untrusted(datagram + data.draw(st.binary(min_size=1, max_size=8))) is None


@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    # With a 32-bit CRC, random bytes essentially never decode; they must never raise.
    assert decode_segment_untrusted(data) is None


def _forge(type_: int, flags: int, payload: bytes = b"") -> bytes:
    fields = struct.pack("!BBHIII", type_, flags, len(payload), 1, 2, 3)
    return fields + struct.pack("!I", zlib.crc32(payload, zlib.crc32(fields))) + payload


@pytest.mark.parametrize(
    ("type_", "flags"),
    [(0, 0), (7, 0), (255, 0), (SegmentType.ACK, 0x02), (SegmentType.DATA, FLAG_SELECTIVE)],
)
def test_unknown_types_and_flags_are_refused_even_with_a_good_crc(type_: int, flags: int) -> None:
    assert decode_segment_untrusted(_forge(type_, flags)) is None


def test_a_forged_segment_with_known_fields_decodes() -> None:
    assert decode_segment_untrusted(_forge(SegmentType.ACK, FLAG_SELECTIVE)) == Segment(
        SegmentType.ACK, 1, 2, 3, b"", FLAG_SELECTIVE
    )


def test_encode_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_segment(Segment(SegmentType.DATA, 2**32, 0, 0))
    with pytest.raises(ValueError, match="exceeds"):
        encode_segment(Segment(SegmentType.DATA, 0, 0, 0, bytes(MAX_MSS + 1)))


@given(
    st.builds(
        SynOptions,
        protocol=st.sampled_from(["gbn", "sr", "saw"]),
        seq_bits=st.integers(0, 255),
        window=u32,
        mss=st.integers(0, 65535),
    )
)
def test_syn_options_round_trip(options: SynOptions) -> None:
    assert decode_syn_options(encode_syn_options(options)) == options


def test_malformed_syn_options() -> None:
    good = encode_syn_options(SynOptions("sr", 16, 32, 1200))
    assert decode_syn_options(good[:-1]) is None
    assert decode_syn_options(good + b"\0") is None
    assert decode_syn_options(b"\x09" + good[1:]) is None  # unknown protocol code


def test_largest_payload_round_trips() -> None:
    payload = random.Random(0).randbytes(MAX_MSS)
    segment = decode_segment_untrusted(encode_segment(Segment(SegmentType.DATA, 1, 2, 3, payload)))
    assert segment is not None
    assert segment.payload == payload
