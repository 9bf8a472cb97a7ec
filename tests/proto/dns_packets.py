"""Hand-made DNS packets, good and bad, shared by the wire, server and bad-input tests."""

from __future__ import annotations

import random
import struct

__all__ = ["encode_name", "header", "malformed_packets", "query_bytes"]


def header(
    *, id: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", id, flags, qd, an, ns, ar)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def opt_rr(udp: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, udp, ttl, len(options)) + options


def query_bytes(name: str, qtype: int = 1, *, id: int = 0x1234, edns: bytes | None = None) -> bytes:
    return (
        header(id=id, ar=1 if edns is not None else 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, 1)
        + (edns or b"")
    )


def pointer_chain_packet(hops: int) -> bytes:
    """A query whose answer record's owner is the end of a chain of ``hops`` backward pointers."""
    question = b"\x01a\x00" + struct.pack("!HH", 1, 1)
    start = 12 + len(question) + 1 + 10  # rdata of the first record: after its root owner and fixed fields
    rdata = b"".join(struct.pack("!H", 0xC000 | (12 if i == 0 else start + 2 * (i - 1))) for i in range(hops))
    chain_rr = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(rdata)) + rdata
    last = start + 2 * (hops - 1)
    tail_rr = struct.pack("!H", 0xC000 | last) + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x7f\x00\x00\x01"
    return header(an=2) + question + chain_rr + tail_rr


def malformed_packets(rng: random.Random) -> list[bytes]:
    """One of each kind of bad query, then random variations (the server must survive them all)."""
    q = struct.pack("!HH", 1, 1)
    fixed = [
        b"",
        b"\x12",
        header()[:11],  # a truncated header
        header() + b"\x03ab",  # a name running off the end
        header() + b"\xc0\x0c" + q,  # a pointer to itself
        header() + b"\xc0\x10" + q,  # a forward pointer
        header() + b"\x01a\xc0\x0e" + q,  # a loop through the name's own labels
        header() + b"\x40" + b"a" * 64 + b"\x00" + q,  # a 64-octet label
        header() + b"\x80" + b"a" * 128 + b"\x00" + q,  # a reserved label type
        header() + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00" + q,  # a 320-octet name
        header(qd=0),
        header(qd=2) + encode_name("a.test") + q + encode_name("b.test") + q,
        header(qd=1, an=1) + encode_name("a.test") + q,
        header() + encode_name("a.test") + q + b"junk",
        header(ar=2) + encode_name("a.test") + q + opt_rr() + opt_rr(),
        header(ar=1) + encode_name("a.test") + q + opt_rr(version=1),
        header(flags=0x2800) + encode_name("a.test") + q,  # opcode 5 (UPDATE)
        header(flags=0x8000) + encode_name("a.test") + q,  # QR set: a response, never answered
        pointer_chain_packet(3000),
    ]
    out = list(fixed)
    while len(out) < 10_000:
        kind = rng.randrange(3)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 64)))
        elif kind == 1:
            base = bytearray(rng.choice(fixed[2:]))
            for _ in range(rng.randrange(1, 4)):
                if base:
                    base[rng.randrange(len(base))] = rng.randrange(256)
            out.append(bytes(base))
        else:
            good = query_bytes("www.shop.test", edns=opt_rr())
            out.append(good[: rng.randrange(len(good))])
    return out
