"""Netascii (RFC 1350 / RFC 764): CR LF and CR NUL, translated however the data is split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.tftp_netascii import NetasciiDecoder, netascii_encode

CASES = [
    (b"", b""),
    (b"plain", b"plain"),
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"bare\rcr", b"bare\r\0cr"),
    (b"dos\r\n", b"dos\r\0\r\n"),  # a local CR before a newline is a literal CR
    (b"\r", b"\r\0"),
    (b"\n\n", b"\r\n\r\n"),
    (b"nul\0ok", b"nul\0ok"),
]


@pytest.mark.parametrize(("local", "wire"), CASES)
def test_encode(local: bytes, wire: bytes) -> None:
    assert netascii_encode(local) == wire


@pytest.mark.parametrize(("local", "wire"), CASES)
def test_decode(local: bytes, wire: bytes) -> None:
    assert NetasciiDecoder().decode(wire, final=True) == local


def test_illegal_cr_is_kept_rather_than_failing() -> None:
    assert NetasciiDecoder().decode(b"a\rb\r\r\n", final=True) == b"a\rb\r\n"


def test_a_cr_at_the_end_of_a_chunk_waits_for_the_next() -> None:
    decoder = NetasciiDecoder()
    assert decoder.decode(b"line\r") == b"line"
    assert decoder.decode(b"\nnext\r") == b"\nnext"
    assert decoder.decode(b"\0", final=True) == b"\r"


def test_a_trailing_cr_is_flushed_at_the_end() -> None:
    decoder = NetasciiDecoder()
    assert decoder.decode(b"x\r") == b"x"
    assert decoder.decode(b"", final=True) == b"\r"


def _decode_split(wire: bytes, cuts: list[int]) -> bytes:
    decoder = NetasciiDecoder()
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    return b"".join(decoder.decode(p) for p in pieces) + decoder.decode(b"", final=True)


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=12))
def test_round_trip_whatever_the_chunking(local: bytes, cuts: list[int]) -> None:
    assert _decode_split(netascii_encode(local), cuts) == local


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=12))
def test_decoding_does_not_depend_on_chunking(wire: bytes, cuts: list[int]) -> None:
    assert _decode_split(wire, cuts) == NetasciiDecoder().decode(wire, final=True)
