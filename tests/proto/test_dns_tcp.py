"""DNS over TCP framing (netlab.proto.dns_tcp): every split of the bytes gives the same messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.dns_tcp import NEED_DATA, DnsStream, EndOfStream, Message, NeedData
from netlab.proto.dns_wire import LocalProtocolError, RemoteProtocolError


def _drain(stream: DnsStream) -> list[Message | EndOfStream]:
    out: list[Message | EndOfStream] = []
    while not isinstance(event := stream.next_event(), NeedData):
        out.append(event)
        if isinstance(event, EndOfStream):
            break
    return out


@given(
    messages=st.lists(st.binary(min_size=0, max_size=300), max_size=6),
    cuts=st.lists(st.integers(1, 64), max_size=40),
)
def test_messages_survive_any_split(messages: list[bytes], cuts: list[int]) -> None:
    sender = DnsStream()
    wire = b"".join(sender.send(m) for m in messages)
    receiver = DnsStream()
    events: list[Message | EndOfStream] = []
    pos = 0
    for cut in cuts:
        if pos >= len(wire):
            break
        receiver.receive_data(wire[pos : pos + cut])
        pos += cut
        events += _drain(receiver)
    if wire[pos:]:
        receiver.receive_data(wire[pos:])
        events += _drain(receiver)
    receiver.receive_data(b"")
    events += _drain(receiver)
    assert events == [*(Message(m) for m in messages), EndOfStream()]


def test_need_data_until_the_whole_message() -> None:
    stream = DnsStream()
    stream.receive_data(b"\x00\x05abc")
    assert stream.next_event() is NEED_DATA
    assert stream.buffered == 5
    stream.receive_data(b"de\x00")
    assert stream.next_event() == Message(b"abcde")
    assert stream.next_event() is NEED_DATA


def test_oversized_length_is_refused_before_the_data() -> None:
    stream = DnsStream(max_message=4096)
    stream.receive_data(b"\xff\xff")
    with pytest.raises(RemoteProtocolError, match="65535"):
        stream.next_event()


def test_eof_inside_a_message() -> None:
    stream = DnsStream()
    stream.receive_data(b"\x00\x10abc")
    stream.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="inside a message"):
        stream.next_event()


def test_misuse() -> None:
    stream = DnsStream()
    stream.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        stream.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        stream.send(b"x" * 65536)
