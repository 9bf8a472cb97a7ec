"""The segment codec: netlab's reliable-transport wire format.

Strategy: one fixed 20-byte header in network byte order, then the payload; a CRC-32 over both
guards everything.  Decoding trusts nothing: the length must match the datagram exactly, the CRC
must match, the type must be known and unknown flag bits must be clear, otherwise the datagram is
not a segment and ``decode_segment_untrusted`` returns ``None`` (the connection counts it).  The
hot path is two ``struct`` calls and two ``zlib.crc32`` calls over memoryviews; the payload is
copied once on each side and never walked byte by byte in Python.

Header layout (all fields big-endian)::

     0      1      2             4                8                12               16        20
    +------+------+-------------+----------------+----------------+----------------+---------+
    | type | flags|   length    |      seq       |      ack       |     window     |  CRC-32 |
    +------+------+-------------+----------------+----------------+----------------+---------+

* ``type``: SYN, SYN-ACK, DATA, ACK, FIN or RST (``SegmentType``).
* ``flags``: bit 0 (``FLAG_SELECTIVE``) on an ACK says ``seq`` names the one segment acknowledged
  (Selective Repeat); all other bits must be zero.
* ``length``: payload bytes; the datagram is exactly ``HEADER_SIZE + length`` bytes long.
* ``seq``, ``ack``: k-bit sequence numbers (k is agreed in the handshake, 3..32).  ``ack`` is
  cumulative: the next segment the sender of this segment expects.
* ``window``: the receive window the sender of this segment advertises, in segments.
* ``CRC-32``: ``zlib.crc32`` (ISO-HDLC, the Ethernet polynomial) over header bytes 0-15 and the
  payload.  It detects every 1- and 2-bit error and every burst up to 32 bits.

A SYN and a SYN-ACK carry the connection's parameters (``SynOptions``) as an 8-byte payload:
protocol (u8), k (u8), window N (u32), mss (u16).  In a SYN they are what the client asks for; in
the SYN-ACK, what the server agreed to.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import NamedTuple

__all__ = [
    "FLAG_SELECTIVE",
    "HEADER_SIZE",
    "MAX_DATAGRAM",
    "MAX_MSS",
    "PROTOCOL_CODES",
    "Segment",
    "SegmentType",
    "SynOptions",
    "decode_segment_untrusted",
    "decode_syn_options",
    "encode_segment",
    "encode_syn_options",
]


class SegmentType(enum.IntEnum):
    SYN = 1
    SYN_ACK = 2
    DATA = 3
    ACK = 4
    FIN = 5
    RST = 6


FLAG_SELECTIVE = 0x01  # on an ACK: ``seq`` is the one segment this ACK is for
_KNOWN_FLAGS = FLAG_SELECTIVE

_HEADER = struct.Struct("!BBHIIII")  # the whole header, for decoding
_FIELDS = struct.Struct("!BBHIII")  # the header up to the CRC, for encoding
_CRC = struct.Struct("!I")
HEADER_SIZE = _HEADER.size  # bytes
_CRC_OFFSET = _FIELDS.size
#: The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP), and so the largest segment.
MAX_DATAGRAM = 65507  # bytes
MAX_MSS = MAX_DATAGRAM - HEADER_SIZE  # bytes of payload in one DATA segment

# dict.get on a table is cheaper than the enum constructor and returns None for unknown types.
_TYPES: dict[int, SegmentType] = {t.value: t for t in SegmentType}


class Segment(NamedTuple):
    """One decoded segment.  A NamedTuple because it is built once per datagram on the hot path."""

    type: SegmentType
    seq: int
    ack: int
    window: int
    payload: bytes = b""
    flags: int = 0


def encode_segment(segment: Segment) -> bytes:
    """The datagram for ``segment``.

    Raises:
        ValueError: a field does not fit its width, or the payload is longer than ``MAX_MSS``.
    """
    return _encode(segment.type, segment.flags, segment.seq, segment.ack, segment.window, segment.payload)


def _encode(
    type_: int, flags: int, seq: int, ack: int, window: int, payload: bytes | memoryview = b""
) -> bytes:
    """``encode_segment`` without building a Segment first: the engine calls this per DATA segment."""
    length = len(payload)
    if length > MAX_MSS:
        raise ValueError(f"payload of {length} bytes exceeds the maximum of {MAX_MSS}")
    try:
        fields = _FIELDS.pack(type_, flags, length, seq, ack, window)
    except struct.error as exc:
        raise ValueError(f"segment field out of range: {exc}") from exc
    crc = zlib.crc32(payload, zlib.crc32(fields))
    # One join: the payload is copied exactly once into the datagram.
    return b"".join((fields, _CRC.pack(crc), payload))


def decode_segment_untrusted(data: bytes) -> Segment | None:
    """Parse a datagram from the network; ``None`` if it is corrupt, truncated or unknown.

    Never raises on any input.
    """
    if len(data) < HEADER_SIZE:
        return None
    type_, flags, length, seq, ack, window, crc = _HEADER.unpack_from(data)
    if len(data) != HEADER_SIZE + length:
        return None
    view = memoryview(data)
    if zlib.crc32(view[HEADER_SIZE:], zlib.crc32(view[:_CRC_OFFSET])) != crc:
        return None
    kind = _TYPES.get(type_)
    if kind is None or flags & ~_KNOWN_FLAGS:
        return None
    # Only an ACK may carry FLAG_SELECTIVE; anything else with flags set is not ours.
    if flags and kind is not SegmentType.ACK:
        return None
    return Segment(kind, seq, ack, window, data[HEADER_SIZE:] if length else b"", flags)


# -- SYN options --------------------------------------------------------------------------------

#: Protocol names on the wire.
PROTOCOL_CODES: dict[str, int] = {"gbn": 1, "sr": 2, "saw": 3}
_PROTOCOL_NAMES = {code: name for name, code in PROTOCOL_CODES.items()}
_SYN = struct.Struct("!BBIH")


class SynOptions(NamedTuple):
    """The parameters a SYN proposes and a SYN-ACK settles."""

    protocol: str
    seq_bits: int
    window: int
    mss: int


def encode_syn_options(options: SynOptions) -> bytes:
    """The 8-byte SYN / SYN-ACK payload."""
    return _SYN.pack(PROTOCOL_CODES[options.protocol], options.seq_bits, options.window, options.mss)


def decode_syn_options(payload: bytes) -> SynOptions | None:
    """The options in a SYN / SYN-ACK payload, or ``None`` if malformed (range checks are the caller's)."""
    if len(payload) != _SYN.size:
        return None
    code, bits, window, mss = _SYN.unpack(payload)
    name = _PROTOCOL_NAMES.get(code)
    if name is None:
        return None
    return SynOptions(name, bits, window, mss)
