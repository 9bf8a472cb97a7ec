"""Set-up, close and failure of a connection, in virtual time."""

from __future__ import annotations

import random

import pytest

from netlab.transport.engine import Connection, ConnState, Role, TransportParams
from netlab.transport.errors import LocalProtocolError
from netlab.transport.events import Closed, Connected, ConnectionFailed, DataReceived, EndOfData
from netlab.transport.segment import Segment, SegmentType, SynOptions, encode_segment, encode_syn_options
from tests.transport.pair import MSS, Pair, decode

SYN, SYN_ACK, ACK, DATA, FIN, RST = (
    SegmentType.SYN,
    SegmentType.SYN_ACK,
    SegmentType.ACK,
    SegmentType.DATA,
    SegmentType.FIN,
    SegmentType.RST,
)


def _state(conn: Connection) -> ConnState:
    return conn.state  # read through a call: the state changes between a test's steps


def _types(segments: list[Segment]) -> list[SegmentType]:
    return [s.type for s in segments]


def _syn_seq(seed: int, bits: int = 16) -> int:
    params = TransportParams(seq_bits=bits, window=min(32, 2 ** (bits - 1)))
    client = Connection(params, role=Role.CLIENT, rng=random.Random(seed), now=0.0)
    (syn,) = client.datagrams_to_send(0.0)
    return decode(syn).seq


def test_handshake_settles_parameters_and_reports_connected() -> None:
    pair = Pair("sr", window=8, mss=500, server_params=TransportParams(protocol="gbn", window=4, mss=300))
    (syn,) = pair.flush(pair.client)
    assert syn.type is SYN
    assert syn.payload == encode_syn_options(SynOptions("sr", 16, 8, 500))
    (syn_ack,) = pair.flush(pair.server)
    # The server adopts the client's protocol and k and the smaller window and mss.
    assert syn_ack.type is SYN_ACK
    assert syn_ack.payload == encode_syn_options(SynOptions("sr", 16, 4, 300))
    assert syn_ack.ack == (syn.seq + 1) % 2**16
    assert _state(pair.client) is ConnState.ESTABLISHED
    assert pair.drain(pair.client) == [Connected()]
    assert _types(pair.flush(pair.client)) == [ACK]
    assert _state(pair.server) is ConnState.ESTABLISHED
    assert pair.drain(pair.server) == [Connected()]
    pair.client.send(bytes(1000))
    assert [len(s.payload) for s in pair.flush(pair.client)] == [300, 300, 300, 100]


def test_initial_sequence_numbers_come_from_the_rng() -> None:
    assert _syn_seq(1) == _syn_seq(1)
    assert len({_syn_seq(seed) for seed in range(20)}) > 15
    assert all(0 <= _syn_seq(seed, bits=3) < 8 for seed in range(20))


@pytest.mark.parametrize("lost", ["SYN", "SYN-ACK", "ACK", "ACK and no data"])
def test_handshake_recovers_from_a_lost_segment(lost: str) -> None:
    pair = Pair("gbn")
    if lost != "ACK and no data":
        pair.client.send(b"hello")
    pair.flush(pair.client, drop=lambda s: lost == "SYN")
    if lost == "SYN":
        pair.fire(pair.client)  # the SYN goes again
        pair.flush(pair.client)
    pair.flush(pair.server, drop=lambda s: lost == "SYN-ACK")
    if lost == "SYN-ACK":
        pair.fire(pair.client)
        pair.flush(pair.client)  # a repeated SYN: the server repeats its SYN-ACK
        pair.flush(pair.server)
    pair.flush(pair.client, drop=lambda s: s.type is ACK and lost.startswith("ACK"))
    if lost == "ACK and no data":
        assert _state(pair.server) is ConnState.SYN_RCVD
        pair.fire(pair.server)  # the SYN-ACK goes again; the client acknowledges it again
        pair.flush(pair.server)
        pair.flush(pair.client)
    assert _state(pair.server) is ConnState.ESTABLISHED  # by the ACK, or by the DATA behind it
    pair.exchange()
    retransmitted = {"SYN": 1, "SYN-ACK": 2, "ACK": 0, "ACK and no data": 1}[lost]
    assert pair.client.stats.retransmissions + pair.server.stats.retransmissions == retransmitted
    expected = [] if lost == "ACK and no data" else [DataReceived(b"hello")]
    assert pair.events[id(pair.server)] == [Connected(), *expected]


def _close(pair: Pair, *, drop_fin: bool = False, drop_last_ack: bool = False) -> None:
    pair.client.send(bytes(2 * MSS))
    pair.client.send_eof()
    pair.flush(pair.client, drop=lambda s: drop_fin and s.type is FIN)
    pair.flush(pair.server)
    if drop_fin:
        pair.fire(pair.client)
        assert _types(pair.flush(pair.client)) == [FIN]
        pair.flush(pair.server)
    assert _state(pair.client) is ConnState.FIN_WAIT_2
    assert pair.drain(pair.server)[-1] == EndOfData()
    assert _state(pair.server) is ConnState.CLOSE_WAIT
    pair.server.send_eof()
    assert _state(pair.server) is ConnState.LAST_ACK
    pair.flush(pair.server)
    pair.flush(pair.client, drop=lambda s: drop_last_ack)


@pytest.mark.parametrize("drop_fin", [False, True])
def test_orderly_close_and_linger(drop_fin: bool) -> None:
    pair = Pair("sr", linger=2.0)
    pair.handshake()
    _close(pair, drop_fin=drop_fin)
    assert _state(pair.server) is ConnState.CLOSED
    assert pair.server.closed
    assert pair.drain(pair.server) == [Closed()]
    assert pair.server.get_timer() is None
    # The client acknowledged the last FIN: it lingers, then closes.
    assert _state(pair.client) is ConnState.TIME_WAIT
    assert pair.drain(pair.client) == [EndOfData()]
    assert pair.client.get_timer() == pytest.approx(pair.now + 2.0)
    pair.fire(pair.client)
    assert pair.client.closed
    assert pair.drain(pair.client) == [Closed()]
    assert pair.client.get_timer() is None


def test_linger_answers_a_repeated_fin_when_the_last_ack_was_lost() -> None:
    pair = Pair("gbn", linger=5.0)
    pair.handshake()
    _close(pair, drop_last_ack=True)
    assert _state(pair.server) is ConnState.LAST_ACK
    pair.fire(pair.server)  # the FIN again
    assert _types(pair.flush(pair.server)) == [FIN]
    assert _state(pair.client) is ConnState.TIME_WAIT
    assert _types(pair.flush(pair.client)) == [ACK]
    assert pair.server.closed
    assert pair.server.stats.retransmissions == 1
    assert pair.client.get_timer() == pytest.approx(pair.now + 5.0)  # the linger restarted


def test_simultaneous_close() -> None:
    pair = Pair("sr")
    pair.handshake()
    pair.client.send_eof()
    pair.server.send_eof()
    client_out = pair.client.datagrams_to_send(pair.now)
    server_out = pair.server.datagrams_to_send(pair.now)
    for datagram in client_out:
        pair.server.receive_datagram(datagram, pair.now)
    for datagram in server_out:
        pair.client.receive_datagram(datagram, pair.now)
    assert pair.client.state is _state(pair.server) is ConnState.CLOSING
    pair.exchange()
    assert pair.client.state is _state(pair.server) is ConnState.TIME_WAIT


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
def test_retry_limit_fails_the_connection_and_leaves_no_timer(protocol: str) -> None:
    pair = Pair(protocol, max_retries=4, initial_rto=1.0, min_rto=1.0, max_rto=8.0)
    pair.handshake()
    pair.client.send(bytes(3 * MSS))
    sends = len(pair.data_seqs(pair.client, pair.flush(pair.client, drop=lambda s: True)))
    for _ in range(20):
        pair.fire(pair.client)
        if _state(pair.client) is not ConnState.ESTABLISHED:
            break
        sends += len(pair.data_seqs(pair.client, pair.flush(pair.client, drop=lambda s: True)))
    assert _state(pair.client) is ConnState.FAILED
    assert pair.drain(pair.client) == [ConnectionFailed("no acknowledgement after 4 retransmissions")]
    assert _types(pair.flush(pair.client, drop=lambda s: True)) == [RST]
    assert pair.client.get_timer() is None
    assert pair.client.closed
    # Backoff: RTOs of 1 + 2 + 4 + 8 + 8 seconds (clamped at max_rto) after the handshake; the
    # fifth expiry of the oldest segment's timer without progress ends it.
    assert pair.now == pytest.approx(23.0)
    # Five rounds of the whole flight.  Selective Repeat first sent one tail-loss probe, which
    # neither backs off nor counts as a retry.
    assert pair.client.stats.loss_probes == (1 if protocol == "sr" else 0)
    assert sends == 5 * min(3, pair.params.effective_window) + pair.client.stats.loss_probes
    with pytest.raises(LocalProtocolError):
        pair.client.send(b"more")


def test_retry_limit_applies_to_the_handshake() -> None:
    client = Connection(TransportParams(max_retries=2), role=Role.CLIENT, rng=random.Random(0), now=0.0)
    now = 0.0
    syns = len(client.datagrams_to_send(now))
    while (deadline := client.get_timer()) is not None:
        now = deadline
        client.handle_timer(now)
        syns += len([d for d in client.datagrams_to_send(now) if decode(d).type is SYN])
    assert syns == 3
    assert now == pytest.approx(1 + 2 + 4)
    assert client.next_event() == ConnectionFailed("no answer to our SYN after 2 retransmissions")


def test_abort_resets_the_peer() -> None:
    pair = Pair("sr")
    pair.handshake()
    pair.server.send(bytes(MSS))
    pair.client.abort()
    assert _state(pair.client) is ConnState.CLOSED
    assert _types(pair.flush(pair.client)) == [RST]
    assert pair.client.closed
    assert pair.client.get_timer() is None
    pair.flush(pair.server)  # the server's data meets a closed connection: ignored
    assert _state(pair.server) is ConnState.FAILED
    assert pair.drain(pair.server) == [ConnectionFailed("connection reset by peer")]
    assert pair.server.get_timer() is None


def test_a_rst_from_outside_the_window_is_ignored_and_counted() -> None:
    pair = Pair("sr", window=4)
    pair.handshake()
    # Past the server's receive window (which the receive buffer sizes), so not the client's.
    beyond = pair.server._rcv.size + 1000
    stray = encode_segment(Segment(RST, (pair.isn[id(pair.client)] + beyond) % 2**16, 0, 0))
    pair.server.receive_datagram(stray, pair.now)
    assert _state(pair.server) is ConnState.ESTABLISHED
    assert pair.server.stats.unexpected_dropped == 1


def test_a_refused_syn_gets_a_rst_and_the_client_fails() -> None:
    client = Connection(
        TransportParams(protocol="sr", window=4, seq_bits=3), role=Role.CLIENT, rng=random.Random(0), now=0
    )
    (syn,) = client.datagrams_to_send(0.0)
    seg = decode(syn)
    bad_syn = encode_segment(seg._replace(payload=encode_syn_options(SynOptions("sr", 3, 5, 100))))
    server = Connection(TransportParams(), role=Role.SERVER, rng=random.Random(1), now=0.0)
    server.receive_datagram(bad_syn, 0.0)
    (reply,) = server.datagrams_to_send(0.0)
    assert decode(reply).type is RST
    assert decode(reply).ack == (seg.seq + 1) % 8
    assert server.closed
    assert isinstance(server.next_event(), ConnectionFailed)
    client.receive_datagram(reply, 0.1)
    assert client.next_event() == ConnectionFailed("connection refused by the peer")


def test_a_syn_ack_offering_more_than_asked_is_refused() -> None:
    client = Connection(TransportParams(window=4), role=Role.CLIENT, rng=random.Random(0), now=0.0)
    (syn,) = client.datagrams_to_send(0.0)
    options = encode_syn_options(SynOptions("sr", 16, 8, 1200))
    client.receive_datagram(encode_segment(Segment(SYN_ACK, 77, decode(syn).seq + 1, 8, options)), 0.1)
    event = client.next_event()
    assert isinstance(event, ConnectionFailed)
    assert event.reason.startswith("bad handshake")
    assert _types([decode(d) for d in client.datagrams_to_send(0.1)]) == [RST]


def test_unexpected_segments_and_a_previous_incarnation_are_dropped_and_counted() -> None:
    # A receive buffer of four segments: the old numbers fall outside the new window.
    old = Pair("sr", window=4, client_seed=5, server_seed=6, receive_buffer=4 * MSS)
    old.handshake()
    old.client.send(b"old data")
    old_datagrams = old.client.datagrams_to_send(old.now)
    # A new connection between the same peers, with new random ISNs.
    pair = Pair("sr", window=4, client_seed=7, server_seed=8, receive_buffer=4 * MSS)
    pair.server.receive_datagram(old_datagrams[0], 0.0)  # DATA to a listener
    assert _state(pair.server) is ConnState.LISTEN
    pair.handshake()
    for datagram in old_datagrams:
        pair.server.receive_datagram(datagram, pair.now)
    syn_ack_to_server = encode_segment(
        Segment(SYN_ACK, 1, 2, 3, encode_syn_options(SynOptions("sr", 16, 4, 100)))
    )
    pair.server.receive_datagram(syn_ack_to_server, pair.now)
    pair.server.receive_datagram(b"\x00" * 30, pair.now)
    assert pair.server.stats.unexpected_dropped == 3
    assert pair.server.stats.corrupt_dropped == 1
    assert pair.drain(pair.server) == []
    pair.client.send(b"new data")
    pair.exchange()
    assert pair.events[id(pair.server)] == [Connected(), DataReceived(b"new data")]


def test_api_misuse() -> None:
    pair = Pair("gbn")
    pair.client.send_eof()
    pair.client.send_eof()  # idempotent
    with pytest.raises(LocalProtocolError, match="after the end of our stream"):
        pair.client.send(b"late")
    pair.handshake()
    assert _state(pair.client) is ConnState.FIN_WAIT_1  # the early EOF took effect once connected
    pair.client.abort()
    with pytest.raises(LocalProtocolError):
        pair.client.send(b"x")
    pair.client.abort()  # nothing left to abort: no error


def test_truncated_and_random_datagrams_are_counted_and_change_nothing() -> None:
    pair = Pair("sr")
    pair.handshake()
    pair.client.send(b"payload")
    (datagram,) = pair.client.datagrams_to_send(pair.now)
    junk = [datagram[:-1], datagram[:5], b"", random.Random(0).randbytes(64), datagram + b"\0"]
    for bad in junk:
        pair.server.receive_datagram(bad, pair.now)
    assert pair.server.stats.corrupt_dropped == len(junk)
    assert pair.server.datagrams_to_send(pair.now) == []
    assert pair.drain(pair.server) == []
    assert _state(pair.server) is ConnState.ESTABLISHED
    pair.server.receive_datagram(datagram, pair.now)
    assert pair.drain(pair.server) == [DataReceived(b"payload")]


def test_idle_timeout_fails_a_receiver_whose_peer_vanished() -> None:
    pair = Pair("gbn", idle_timeout=30.0)
    pair.handshake()
    pair.client.send(bytes(MSS))
    pair.exchange()
    # The client goes away for good; the server has nothing to retransmit, only a deadline.
    assert pair.server.get_timer() == pytest.approx(pair.now + 30.0)
    pair.fire(pair.server)
    assert pair.drain(pair.server)[-1] == ConnectionFailed("nothing heard from the peer for 30.0 s")
    assert _types(pair.flush(pair.server, drop=lambda s: True)) == [RST]
    assert pair.server.get_timer() is None


def test_without_idle_timeout_a_pure_receiver_has_no_timer() -> None:
    pair = Pair("gbn")
    pair.handshake()
    assert pair.server.get_timer() is None
