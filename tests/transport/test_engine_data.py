"""The data path of the engine, datagram by datagram in virtual time: timers, ACKs, flow control."""

from __future__ import annotations

import pytest

from netlab.transport.events import DataReceived
from netlab.transport.segment import FLAG_SELECTIVE, SegmentType
from tests.transport.pair import MSS, Pair


def _payload(pair: Pair) -> bytes:
    return b"".join(e.data for e in pair.events[id(pair.server)] if isinstance(e, DataReceived))


def test_timeout_resends_the_whole_window_for_gbn() -> None:
    pair = Pair("gbn", window=3)
    pair.handshake()
    pair.client.send(bytes(3 * MSS))
    pair.now = 1.0
    sent = pair.flush(pair.client, drop=lambda s: True)  # no duplicate can tell of the loss
    assert pair.data_seqs(pair.client, sent) == [0, 1, 2]
    assert pair.client.datagrams_to_send(pair.now) == []
    deadline = pair.fire(pair.client)
    assert deadline == pytest.approx(1.0 + pair.client.stats.rto / 2)  # armed before the backoff
    again = pair.flush(pair.client)
    assert pair.data_seqs(pair.client, again) == [0, 1, 2]
    pair.exchange()
    assert _payload(pair) == bytes(3 * MSS)
    assert pair.client.stats.timeouts == 1


def test_sr_timeout_resends_only_the_segment_whose_timer_expired() -> None:
    pair = Pair("sr", window=3)
    pair.handshake()
    pair.client.send(bytes(3 * MSS))
    pair.now = 1.0
    first = lambda s: pair.rel(pair.client, s) == 0  # noqa: E731
    pair.flush(pair.client, drop=first)
    pair.flush(pair.server)  # ACKs of 1 and 2, which SR buffered
    assert pair.client.datagrams_to_send(pair.now) == []
    # Segments sent after 0 arrived: once the reordering window passes, 0 is presumed lost.
    resent_at = pair.fire(pair.client)
    assert resent_at < 1.01
    assert pair.data_seqs(pair.client, pair.flush(pair.client, drop=first)) == [0]  # lost again
    assert pair.client.stats.fast_retransmits == 1
    # Nothing sent after that retransmission can reveal its loss: a tail-loss probe, lost too.
    probed_at = pair.fire(pair.client)
    assert pair.data_seqs(pair.client, pair.flush(pair.client, drop=first)) == [0]
    assert pair.client.stats.loss_probes == 1
    # Then only its own retransmission timer is left.
    deadline = pair.fire(pair.client)
    assert deadline == pytest.approx(probed_at + pair.client.stats.rto / 2)  # armed before the backoff
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [0]
    pair.exchange()
    assert _payload(pair) == bytes(3 * MSS)
    assert (pair.client.stats.timeouts, pair.client.stats.retransmissions) == (1, 3)


def test_sr_keeps_n_segments_in_the_network_while_a_hole_waits_for_its_repair() -> None:
    # N bounds the segments outstanding: the ACKs of 1 and 2 free two places although 0, the
    # base, is missing, so 3 and 4 go out at once and the receiver buffers them beyond base + N.
    pair = Pair("sr", window=3)
    pair.handshake()
    pair.client.send(bytes(8 * MSS))
    first = lambda s: pair.rel(pair.client, s) == 0  # noqa: E731
    assert pair.data_seqs(pair.client, pair.flush(pair.client, drop=first)) == [0, 1, 2]
    pair.flush(pair.server)  # ACKs of 1 and 2
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [3, 4]
    assert (pair.client._snd.outstanding, pair.client._snd.in_flight) == (3, 5)
    assert pair.server._rcv.buffered == 4  # 1, 2, 3 and 4 wait for 0
    assert _payload(pair) == b""
    pair.exchange()
    assert _payload(pair) == bytes(8 * MSS)


def test_gbn_sends_nothing_new_until_the_oldest_segment_is_acknowledged() -> None:
    pair = Pair("gbn", window=3)
    pair.handshake()
    pair.client.send(bytes(8 * MSS))
    first = lambda s: pair.rel(pair.client, s) == 0  # noqa: E731
    pair.flush(pair.client, drop=first)
    pair.flush(pair.server)  # two duplicate ACKs
    assert pair.client.datagrams_to_send(pair.now) == []


@pytest.mark.parametrize(("protocol", "resent"), [("gbn", [0, 1, 2, 3, 4]), ("sr", [0])])
def test_three_duplicate_acks_trigger_a_fast_retransmit(protocol: str, resent: list[int]) -> None:
    pair = Pair(protocol, window=8)
    pair.handshake()
    pair.client.send(bytes(5 * MSS))
    pair.flush(pair.client, drop=lambda s: pair.rel(pair.client, s) == 0)
    acks = pair.server.datagrams_to_send(pair.now)
    assert len(acks) == 4  # one per segment 1..4, each repeating "I still need 0"
    for count, ack in enumerate(acks[:3], start=1):
        pair.client.receive_datagram(ack, pair.now)
        assert pair.client.stats.dup_acks == count
        if count < 3:
            assert pair.client.datagrams_to_send(pair.now) == []
    assert pair.client.stats.fast_retransmits == 1
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == resent
    pair.client.receive_datagram(acks[3], pair.now)  # the fourth duplicate: no second go-back
    assert pair.client.stats.fast_retransmits == 1
    pair.exchange()
    assert _payload(pair) == bytes(5 * MSS)
    assert pair.client.stats.timeouts == 0


@pytest.mark.parametrize(("protocol", "kept"), [("sr", 2), ("gbn", 1)])
def test_a_segment_after_a_hole_is_named_and_sr_keeps_it_while_gbn_discards_it(
    protocol: str, kept: int
) -> None:
    pair = Pair(protocol, window=4)
    pair.handshake()
    pair.client.send(bytes(2 * MSS))
    first = pair.client.datagrams_to_send(pair.now)
    pair.server.receive_datagram(first[1], pair.now)  # segment 0 is lost
    (ack,) = pair.flush(pair.server)
    assert (ack.type, ack.flags) == (SegmentType.ACK, FLAG_SELECTIVE)
    assert pair.rel(pair.client, ack._replace(seq=ack.ack)) == 0  # still expecting segment 0
    assert pair.rel(pair.client, ack) == 1  # ... and this ACK is for segment 1
    pair.server.receive_datagram(first[0], pair.now)
    pair.drain(pair.server)
    assert _payload(pair) == bytes(kept * MSS)  # SR buffered segment 1, GBN threw it away


@pytest.mark.parametrize("protocol", ["gbn", "sr"])
def test_sr_receiver_re_acknowledges_old_segments_and_gbn_repeats_its_ack(protocol: str) -> None:
    pair = Pair(protocol, window=4)
    pair.handshake()
    pair.client.send(bytes(MSS))
    first = pair.client.datagrams_to_send(pair.now)
    pair.server.receive_datagram(first[0], pair.now)
    pair.server.datagrams_to_send(pair.now)  # the ACK is lost
    pair.server.receive_datagram(first[0], pair.now)  # so the client resends; it is old now
    (ack,) = pair.flush(pair.server)
    assert pair.rel(pair.client, ack._replace(seq=ack.ack)) == 1
    assert _payload(pair) == b""
    assert len(pair.drain(pair.server)) == 1


def test_karn_no_rtt_sample_from_a_retransmitted_segment() -> None:
    pair = Pair("sr", window=2)
    pair.handshake()
    srtt = pair.client.stats.srtt
    pair.client.send(bytes(MSS))
    pair.flush(pair.client, drop=lambda s: True)
    pair.fire(pair.client)
    pair.now += 0.5
    pair.flush(pair.client)  # the retransmission arrives ...
    pair.now += 3.0  # ... and its ACK is very late; a sample would move SRTT
    pair.flush(pair.server)
    assert pair.client.stats.srtt == srtt
    pair.client.send(bytes(MSS))
    pair.flush(pair.client)
    pair.now += 0.25
    pair.flush(pair.server)
    assert pair.client.stats.srtt != srtt  # a segment sent once does give a sample


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
def test_receive_window_is_never_exceeded(protocol: str) -> None:
    # The server's application reads nothing: its buffer takes 3 segments, its window closes.
    server = Pair(protocol, window=8, receive_buffer=3 * MSS).params
    pair = Pair(protocol, window=8, server_params=server)
    pair.handshake()
    pair.client.send(bytes(20 * MSS))
    delivered = 0
    for _ in range(20):
        sent = pair.flush(pair.client)
        delivered += len(pair.data_seqs(pair.client, sent))
        pair.flush(pair.server)
    assert delivered == 3
    assert pair.client.datagrams_to_send(pair.now) == []
    # With nothing in flight and the window shut, only the persist timer is left: it sends a probe.
    pair.fire(pair.client)
    probe = pair.flush(pair.client)
    assert len(pair.data_seqs(pair.client, probe)) == 1
    pair.flush(pair.server)
    # The application reads; the window opens; the server says so and data flows again.
    pair.drain(pair.server)
    update = pair.flush(pair.server)
    assert [(s.type, s.window) for s in update] == [(SegmentType.ACK, min(3, pair.params.effective_window))]
    pair.exchange(drain=True)
    pair.exchange()
    assert _payload(pair) == bytes(20 * MSS)


def test_send_buffer_backpressure() -> None:
    pair = Pair("sr", window=4, send_buffer=10 * MSS)
    assert pair.client.send_buffer_free == 10 * MSS
    pair.client.send(bytes(6 * MSS))
    assert pair.client.send_buffer_free == 4 * MSS
    pair.client.send(bytes(6 * MSS))
    assert pair.client.send_buffer_free == 0  # over-full: the driver must wait
    pair.handshake()
    pair.flush(pair.client)
    assert pair.client.send_buffer_free == 0  # sent but unacknowledged still counts
    pair.flush(pair.server)
    assert pair.client.send_buffer_free == 2 * MSS  # four segments acknowledged


@pytest.mark.parametrize("protocol", ["gbn", "sr"])
def test_data_in_both_directions(protocol: str) -> None:
    pair = Pair(protocol, window=4)
    pair.handshake()
    pair.client.send(b"ping" * 100)
    pair.server.send(b"pong" * 100)
    pair.exchange()
    assert _payload(pair) == b"ping" * 100
    client_got = b"".join(e.data for e in pair.events[id(pair.client)] if isinstance(e, DataReceived))
    assert client_got == b"pong" * 100
