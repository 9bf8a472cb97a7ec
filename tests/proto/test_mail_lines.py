"""Line framing and dot-stuffing shared by SMTP and POP3."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.mail_lines import TOO_LONG, Block, ReceiveBuffer, dot_stuff, to_crlf, to_lf


def _lines(data: bytes, max_length: int = 100) -> list[bytes | object]:
    buf = ReceiveBuffer()
    buf.feed(data)
    out: list[bytes | object] = []
    while (line := buf.next_line(max_length)) is not None:
        out.append(line)
    return out


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"HELO a\r\nNOOP\r\n", [b"HELO a", b"NOOP"]),
        (b"HELO a\nNOOP\n", [b"HELO a", b"NOOP"]),  # bare LF, as typed with nc
        (b"partial", []),
        (b"\r\n", [b""]),
        (b"a\rb\r\n", [b"a\rb"]),  # a CR inside a line is data
    ],
)
def test_lines(data: bytes, lines: list[bytes]) -> None:
    assert _lines(data) == lines


def test_overlong_line_is_reported_once_and_skipped() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"x" * 50)
    assert buf.next_line(20) is None
    assert len(buf) == 0  # not kept: memory stays bounded while the line goes on
    buf.feed(b"y" * 50 + b"\r\nNOOP\r\n")
    assert buf.next_line(20) is TOO_LONG
    assert buf.next_line(20) == b"NOOP"


def test_line_exactly_at_the_limit_passes() -> None:
    assert _lines(b"abcd\r\n", 6) == [b"abcd"]
    assert _lines(b"abcde\r\n", 6) == [TOO_LONG]


@pytest.mark.parametrize(
    ("raw", "content"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..a\r\n..\r\n.\r\n", b".a\r\n.\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        # Only CRLF "." CRLF ends a block: LF "." LF is content (no SMTP smuggling).
        (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n"),
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n"),
    ],
)
def test_blocks(raw: bytes, content: bytes) -> None:
    buf = ReceiveBuffer()
    buf.feed(raw + b"NEXT\r\n")
    assert buf.next_block(1000) == Block(content, len(raw) - 3 if raw != b".\r\n" else 0)
    assert buf.next_line(100) == b"NEXT"


def test_block_over_limit_is_discarded_but_its_end_still_found() -> None:
    buf = ReceiveBuffer()
    for _ in range(100):
        buf.feed(b"0123456789" * 10 + b"\r\n")
        assert buf.next_block(500) is None
        assert len(buf) <= 600
    buf.feed(b"\r\n.")
    assert buf.next_block(500) is None
    buf.feed(b"\r\nQUIT\r\n")
    block = buf.next_block(500)
    assert block is not None
    assert block.overflow
    assert block.content == b""
    assert block.size == 100 * 102 + 2
    assert buf.next_line(100) == b"QUIT"


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=30))
def test_block_chunking_invariance(content: bytes, cuts: list[int]) -> None:
    """However the stuffed bytes are split, the same content comes out."""
    wire = dot_stuff(content) + b"REST\r\n"
    buf = ReceiveBuffer()
    pos, blocks = 0, []
    for size in [*cuts, len(wire)]:
        buf.feed(wire[pos : pos + size])
        pos += size
        block = buf.next_block(10_000)
        if block is not None:
            blocks.append(block)
            break
    buf.feed(wire[pos:])
    assert len(blocks) == 1
    expected = content if not content or content.endswith(b"\r\n") else content + b"\r\n"
    assert blocks[0].content == expected
    assert buf.next_line(100) == b"REST"


@given(st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a b", b"\xc3\xa9"]), max_size=20))
def test_dot_stuffing_round_trip(lines: list[bytes]) -> None:
    content = b"".join(line + b"\r\n" for line in lines)
    wire = dot_stuff(content)
    assert wire.endswith(b".\r\n")
    # No line of the stuffed body is a lone "." except the terminator.
    assert b"\r\n.\r\n" not in b"\r\n" + wire[:-3]
    buf = ReceiveBuffer()
    buf.feed(wire)
    block = buf.next_block(10_000)
    assert block is not None
    assert block.content == content


def test_crlf_conversions() -> None:
    assert to_lf(b"a\r\nb\r\n") == b"a\nb\n"
    assert to_crlf(b"a\nb\n") == b"a\r\nb\r\n"
    assert to_crlf(b"a\r\nb\n") == b"a\r\nb\r\n"  # files written by others may have CRLF
