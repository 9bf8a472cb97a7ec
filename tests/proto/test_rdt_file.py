"""The file-transfer header, body and reply, fed in every split; names are made safe."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.rdt_file import (
    MAX_LINE,
    NEED_DATA,
    FileData,
    FileEnd,
    FileHeader,
    FileReceiver,
    RemoteProtocolError,
    encode_error,
    encode_ok,
    encode_request,
    parse_reply,
    sanitize_name,
)


def _run(chunks: list[bytes], *, max_size: int = 1 << 20) -> tuple[FileHeader | None, bytes, bool]:
    rx = FileReceiver(max_size=max_size)
    body = bytearray()
    ended = False
    for chunk in [*chunks, b""]:
        rx.receive_data(chunk)
        while (event := rx.next_event()) is not NEED_DATA:
            if isinstance(event, FileData):
                body += event.data
            elif isinstance(event, FileEnd):
                ended = True
    return rx.header, bytes(body), ended


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    # Empty pieces are left out: b"" is the EOF.
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@given(
    body=st.binary(max_size=3000),
    name=st.text(min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_split_gives_the_same_transfer(body: bytes, name: str, cuts: list[int]) -> None:
    wire = encode_request(len(body), name) + body
    header, received, ended = _run(_split(wire, cuts))
    assert header == FileHeader(len(body), name)
    assert received == body
    assert ended


def test_header_is_one_ascii_line_whatever_the_name() -> None:
    line = encode_request(5, "my file\nwith ünïcode/../x")
    assert line.isascii()
    assert line.count(b"\n") == 1
    assert line.startswith(b"NETLAB-RDT/1 SEND 5 ")


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"HELLO\n", "malformed"),
        (b"NETLAB-RDT/1 SEND -1 x\n", "malformed"),
        (b"NETLAB-RDT/1 SEND 01 x\n", "malformed"),
        (b"NETLAB-RDT/1 SEND 3 a b\n", "malformed"),
        (b"NETLAB-RDT/1 SEND 3 x\nabcd", "more than"),
        (b"NETLAB-RDT/1 SEND 3 x\nab", "EOF with 1 of 3"),
        (b"NETLAB-RDT/1 SEND 3", "EOF before"),
        (b"NETLAB-RDT/1 SEND 99999999 x\n", "over the limit"),
        (b"N" * (MAX_LINE + 1), "too long"),
    ],
)
def test_bad_input_raises_with_an_err_reply(wire: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        _run([wire], max_size=1000)
    assert info.value.reply.startswith(b"ERR ")
    assert info.value.reply.count(b"\n") == 1


def test_too_long_header_is_refused_before_eof() -> None:
    rx = FileReceiver(max_size=10)
    rx.receive_data(b"x" * MAX_LINE)
    with pytest.raises(RemoteProtocolError, match="too long"):
        rx.next_event()


def test_empty_file() -> None:
    assert _run([encode_request(0, "empty")]) == (FileHeader(0, "empty"), b"", True)


def test_replies_round_trip() -> None:
    digest = hashlib.sha256(b"abc").hexdigest()
    reply = parse_reply(encode_ok(3, digest, "a b.txt"))
    assert (reply.ok, reply.size, reply.sha256, reply.name) == (True, 3, digest, "a b.txt")
    err = parse_reply(encode_error("disk\nfull"))
    assert (err.ok, err.reason) == (False, "disk full")
    with pytest.raises(ValueError, match="malformed"):
        parse_reply(b"OK 3 nothex x\n")


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/file", "file"),
        ("dir\\win.txt", "win.txt"),
        ("..", "unnamed"),
        ("", "unnamed"),
        (".hidden", "hidden"),
        ("a\x00b\nc", "abc"),
        ("  spaced  ", "spaced"),
        ("dir/", "unnamed"),
    ],
)
def test_sanitize_name(raw: str, safe: str) -> None:
    assert sanitize_name(raw) == safe


@given(st.text())
def test_sanitized_names_are_single_safe_components(raw: str) -> None:
    name = sanitize_name(raw)
    assert name
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert not name.startswith(".")
    assert len(name.encode()) <= 200
