"""Flow control at a closed window: zero-window probes, and a receiver that holds its window.

The server's application reads nothing, so its 3-segment receive buffer fills and its window
closes.  RFC 9293 section 3.8.6.1: the sender must keep probing (with exponential backoff) and
must keep the connection open while the receiver answers; nothing may get past the window into
the receiver's buffer (section 3.10.7.4: data beyond the window is not acceptable).
"""

from __future__ import annotations

import itertools

import pytest

from netlab.transport.engine import ConnState
from netlab.transport.events import ConnectionFailed, DataReceived
from netlab.transport.segment import Segment, SegmentType, encode_segment
from tests.transport.pair import MSS, Pair

DATA, ACK, RST = SegmentType.DATA, SegmentType.ACK, SegmentType.RST
TIMERS = {"initial_rto": 1.0, "min_rto": 1.0, "max_rto": 16.0, "max_retries": 3}


def _closed_window(protocol: str) -> Pair:
    """A pair whose server window has closed after 3 segments, 20 segments queued at the client."""
    server = Pair(protocol, window=8, receive_buffer=3 * MSS, **TIMERS).params  # type: ignore[arg-type]
    pair = Pair(protocol, window=8, server_params=server, **TIMERS)  # type: ignore[arg-type]
    pair.handshake()
    pair.client.send(bytes(20 * MSS))
    pair.exchange(drain=False)  # the server's application reads nothing
    assert _buffered(pair) == 3 * MSS
    assert pair.client.datagrams_to_send(pair.now) == []
    return pair


def _buffered(pair: Pair) -> int:
    """Bytes the server has handed to its application (read or not)."""
    return pair.server.stats.bytes_received


def _everything(segment: Segment) -> bool:
    return True


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
def test_zero_window_probes_carry_no_data_back_off_and_keep_an_answering_peer(protocol: str) -> None:
    pair = _closed_window(protocol)
    times = []
    for _ in range(8):  # more probes than max_retries: answered ones never count
        times.append(pair.fire(pair.client))
        probe = pair.flush(pair.client)
        assert [(s.type, len(s.payload)) for s in probe] == [(DATA, 0)]
        assert pair.rel(pair.client, probe[0]) == 2  # just below the base: already acknowledged
        answer = pair.flush(pair.server)
        assert [(s.type, s.window) for s in answer] == [(ACK, 0)]
    assert _buffered(pair) == 3 * MSS  # nothing leaked past the closed window
    intervals = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert intervals == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0, 16.0]  # doubling up to max_rto
    assert pair.client.state is ConnState.ESTABLISHED
    stats = pair.client.stats
    assert (stats.retransmissions, stats.timeouts, stats.loss_probes) == (0, 0, 0)
    # The application reads; the window update opens the flow again.
    pair.exchange(drain=True)
    pair.exchange()
    payload = b"".join(e.data for e in pair.events[id(pair.server)] if isinstance(e, DataReceived))
    assert payload == bytes(20 * MSS)


@pytest.mark.parametrize("protocol", ["gbn", "sr"])
def test_unanswered_zero_window_probes_end_the_connection(protocol: str) -> None:
    pair = _closed_window(protocol)
    probes = 0
    for _ in range(10):
        pair.fire(pair.client)
        if pair.client.state is not ConnState.ESTABLISHED:
            break
        probes += len(pair.flush(pair.client, drop=_everything))  # the peer has vanished
    assert probes == 3
    assert pair.drain(pair.client)[-1] == ConnectionFailed("no answer to 3 zero-window probes")
    assert [s.type for s in pair.flush(pair.client, drop=_everything)] == [RST]
    assert pair.client.get_timer() is None


@pytest.mark.parametrize("protocol", ["gbn", "sr"])
def test_data_past_the_offered_window_is_refused_and_answered(protocol: str) -> None:
    # A sender that probes with new data (or ignores the window) gets an ACK that repeats the
    # closed window, and its data stays out of the receiver's buffer.
    pair = _closed_window(protocol)
    next_number = (pair.isn[id(pair.client)] + 1 + 3) % (1 << pair.bits)
    expected = (pair.isn[id(pair.server)] + 1) % (1 << pair.bits)
    intruder = Segment(DATA, seq=next_number, ack=expected, window=8, payload=b"x" * MSS)
    dropped = pair.server.stats.unexpected_dropped
    pair.server.receive_datagram(encode_segment(intruder), pair.now)
    assert pair.server.stats.unexpected_dropped == dropped + 1
    (answer,) = pair.flush(pair.server)
    assert (answer.type, answer.flags, answer.window) == (ACK, 0, 0)
    assert pair.rel(pair.client, answer._replace(seq=answer.ack)) == 3  # still expecting segment 3
    assert _buffered(pair) == 3 * MSS
