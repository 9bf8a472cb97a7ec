"""Loss recovery before the retransmission timeout, datagram by datagram in virtual time.

Selective Repeat presumes a segment lost once a segment sent after it is acknowledged and a
reordering window has passed (RACK, RFC 8985 section 6), and probes a silent tail (TLP, section
7).  The RTO here is at least one second and the round trip 125 ms (a binary fraction, so that
sums of times are exact), so "before the RTO" is a clear margin.  The network is the test:
``Pair.flush`` delivers at ``pair.now``, and a round trip is made by moving the clock between a
flight and its acknowledgements.
"""

from __future__ import annotations

import random

import pytest

from netlab.link.model import LinkModel
from netlab.link.sim import transfer
from netlab.transport.engine import TransportParams
from netlab.transport.events import DataReceived
from netlab.transport.segment import Segment
from tests.transport.pair import MSS, Drop, Pair

RTT = 0.125
SLOW_RTO = {"initial_rto": 1.0, "min_rto": 1.0}


def _pair(protocol: str = "sr", **params: object) -> Pair:
    """A pair whose handshake took one RTT, so the client's SRTT is ``RTT``."""
    pair = Pair(protocol, **{"window": 16, **SLOW_RTO, **params})  # type: ignore[arg-type]
    pair.flush(pair.client)
    pair.now = RTT
    pair.flush(pair.server)
    pair.flush(pair.client)
    pair.drain(pair.client)
    pair.drain(pair.server)
    assert pair.client.stats.srtt == pytest.approx(RTT)
    return pair


def _numbered(pair: Pair, *numbers: int) -> Drop:
    def drop(segment: Segment) -> bool:
        return pair.rel(pair.client, segment) in numbers

    return drop


def _everything(segment: Segment) -> bool:
    return True


def _payload(pair: Pair) -> bytes:
    pair.drain(pair.server)
    return b"".join(e.data for e in pair.events[id(pair.server)] if isinstance(e, DataReceived))


def test_a_hole_and_its_lost_retransmission_are_repaired_before_the_rto() -> None:
    pair = _pair()
    pair.client.send(bytes(6 * MSS))
    pair.now = 1.0
    pair.flush(pair.client, drop=_numbered(pair, 0))
    pair.now += RTT
    pair.flush(pair.server)  # 1..5 acknowledged: three later segments, no reordering seen
    assert pair.client.stats.fast_retransmits == 1
    pair.client.send(bytes(2 * MSS))  # new data goes out after the retransmission ...
    sent = pair.flush(pair.client, drop=_numbered(pair, 0))
    assert pair.data_seqs(pair.client, sent) == [0, 6, 7]  # ... which is lost again
    pair.now += RTT
    # 6 and 7 were sent after the retransmission and arrived: it was lost too.
    pair.flush(pair.server)
    assert pair.client.stats.fast_retransmits == 2
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [0]
    pair.now += RTT
    pair.flush(pair.server)
    assert _payload(pair) == bytes(8 * MSS)
    assert pair.client.stats.timeouts == 0
    assert pair.now - 1.0 < pair.client.stats.rto  # all of it within one RTO of the first loss
    assert pair.client.get_timer() is None  # nothing left in flight, no timer


def test_a_tail_loss_is_probed_after_two_round_trips_not_the_rto() -> None:
    pair = _pair()
    pair.client.send(bytes(4 * MSS))
    pair.now = 1.0
    pair.flush(pair.client, drop=_numbered(pair, 3))
    pair.now += RTT
    pair.flush(pair.server)  # 0..2 acknowledged; nothing was sent after 3 to reveal its loss
    assert pair.client.datagrams_to_send(pair.now) == []
    srtt = pair.client.stats.srtt
    assert srtt is not None
    probed_at = pair.fire(pair.client)
    assert probed_at == pytest.approx(1.0 + RTT + 2 * srtt)  # PTO = 2 SRTT after the last ACK
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [3]
    pair.now += RTT
    pair.flush(pair.server)
    assert _payload(pair) == bytes(4 * MSS)
    stats = pair.client.stats
    assert (stats.loss_probes, stats.retransmissions, stats.timeouts) == (1, 1, 0)


def test_one_probe_then_only_the_timers_with_backoff() -> None:
    pair = _pair()
    pair.client.send(bytes(2 * MSS))
    pair.now = 1.0
    pair.flush(pair.client, drop=_everything)
    assert pair.fire(pair.client) == pytest.approx(1.0 + 2 * RTT)  # the probe: newest segment
    assert pair.data_seqs(pair.client, pair.flush(pair.client, drop=_everything)) == [1]
    expiries = []
    for _ in range(4):  # each timer: RTO (backed off by the oldest's expiries) after its last send
        expiries.append(
            (pair.fire(pair.client), pair.data_seqs(pair.client, pair.flush(pair.client, drop=_everything)))
        )
    assert expiries == [(2.0, [0]), (2.25, [1]), (4.0, [0]), (4.25, [1])]
    assert (pair.client.stats.loss_probes, pair.client.stats.timeouts) == (1, 4)


def test_reordering_within_the_window_is_not_taken_for_loss() -> None:
    pair = _pair()
    # Round 1: segment 0 arrives after 1..4.  No reordering has been seen yet, so three later
    # segments acknowledged presume it lost at once (the classic rule), and its acknowledgement
    # then comes back a fifth of an RTT after the retransmission: too soon to answer it, so the
    # retransmission was spurious and the reordering window widens to half the minimum RTT.
    pair.client.send(bytes(5 * MSS))
    pair.now = 1.0
    first = pair.client.datagrams_to_send(pair.now)
    for datagram in first[1:]:
        pair.server.receive_datagram(datagram, pair.now)
    pair.now += RTT
    pair.flush(pair.server)
    assert pair.client.stats.retransmissions == 1
    pair.client.datagrams_to_send(pair.now)  # the spurious copy; the original is on its way
    pair.server.receive_datagram(first[0], pair.now)
    pair.now += RTT / 5
    pair.flush(pair.server)
    assert _payload(pair) == bytes(5 * MSS)
    # Round 2: segment 5 is overtaken by 6..12 and arrives 30 ms late, within the window.
    pair.client.send(bytes(8 * MSS))
    pair.now = 2.0
    second = pair.client.datagrams_to_send(pair.now)
    for datagram in second[1:]:
        pair.server.receive_datagram(datagram, pair.now)
    pair.now += RTT
    pair.flush(pair.server)  # seven later segments acknowledged
    assert pair.client.datagrams_to_send(pair.now) == []
    timer = pair.client.get_timer()
    assert timer is not None
    assert timer == pytest.approx(2.0 + RTT + RTT / 2)  # the reordering window, not yet passed
    pair.server.receive_datagram(second[0], pair.now)
    pair.now += 0.03
    pair.flush(pair.server)
    assert pair.client.stats.retransmissions == 1  # only the first, spurious one
    assert pair.client.get_timer() is None
    assert _payload(pair) == bytes(13 * MSS)


def test_gbn_after_a_timeout_three_duplicates_go_back_again() -> None:
    pair = _pair("gbn", window=4)
    pair.client.send(bytes(4 * MSS))
    pair.now = 1.0
    pair.flush(pair.client, drop=_everything)
    pair.fire(pair.client)  # timeout: go back N
    resent = pair.flush(pair.client, drop=_numbered(pair, 0))
    assert pair.data_seqs(pair.client, resent) == [0, 1, 2, 3]
    pair.now += RTT
    # Three duplicates from 1..3 mean 0 was lost again: the copies from before the timeout are
    # long gone, so there is nothing else they could stand for.
    pair.flush(pair.server)
    assert pair.client.stats.fast_retransmits == 1
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [0, 1, 2, 3]
    pair.exchange()
    assert _payload(pair) == bytes(4 * MSS)
    assert pair.client.stats.timeouts == 1


@pytest.mark.parametrize("window", [64, 256])
def test_a_window_far_above_the_path_causes_no_spurious_timeout(window: int) -> None:
    # 256 segments of 1220 bytes queue for 250 ms at 10 Mbit/s, longer than the 200 ms RTO the
    # handshake suggests; ACKs keep arriving meanwhile, so no timer may fire (RFC 6298 5.3).
    link = {"delay": 0.01, "rate_bps": 10e6, "queue_bytes": 1 << 22}
    data = random.Random(1).randbytes(600_000)
    params = TransportParams(protocol="sr", window=window, mss=1200, send_buffer=1 << 22)
    result = transfer(
        data,
        params,
        LinkModel(random.Random(2), **link),  # type: ignore[arg-type]
        LinkModel(random.Random(3), **link),  # type: ignore[arg-type]
        seed=4,
    )
    assert result.delivered == data
    assert result.clean
    assert (result.client.retransmissions, result.client.timeouts) == (0, 0)


def test_reordering_link_causes_few_spurious_retransmissions() -> None:
    # 5% of segments held back 5-15 ms on a 20 ms round trip, nothing lost: every retransmission
    # is spurious.  The rule "three later segments acknowledged" resent nearly every reordered
    # segment; the reordering window learns the delay after a few spurious retransmissions.
    retransmitted = reordered = 0
    for seed in range(3):
        data = random.Random(seed).randbytes(1_000_000)
        forward = LinkModel(random.Random(f"a{seed}"), reorder=0.05, delay=0.01)
        result = transfer(
            data,
            TransportParams(protocol="sr", window=32, mss=1200),
            forward,
            LinkModel(random.Random(f"b{seed}"), reorder=0.05, delay=0.01),
            seed=seed,
        )
        assert result.delivered == data
        retransmitted += result.client.retransmissions
        reordered += forward.stats.reordered
    assert reordered > 100
    assert retransmitted < 0.3 * reordered


def test_lost_acks_do_not_slow_loss_detection() -> None:
    # 5% loss both ways: a segment whose own ACK is lost is reported later by a cumulative ACK.
    # Taking that late moment as its arrival stretched RACK's RTT and delayed every detection
    # after it (5.8 Mbit/s here); only a segment's own ACK times it now (about 7).
    link = {"loss": 0.05, "delay": 0.01, "rate_bps": 10e6, "queue_bytes": 1 << 22}
    for seed in range(3):
        data = random.Random(seed).randbytes(2_000_000)
        result = transfer(
            data,
            TransportParams(protocol="sr", window=64, mss=1200, send_buffer=1 << 22),
            LinkModel(random.Random(f"a{seed}"), **link),  # type: ignore[arg-type]
            LinkModel(random.Random(f"b{seed}"), **link),  # type: ignore[arg-type]
            seed=seed,
        )
        assert result.delivered == data
        assert result.connected_at is not None
        goodput = len(data) * 8 / (result.duration - result.connected_at)
        assert goodput > 6.5e6


def test_gbn_goes_back_a_reordering_window_after_a_duplicate_that_three_never_follow() -> None:
    # N = 4 with 0 and 2 lost: only 1 and 3 can cause duplicates, two of them, never three.
    pair = _pair("gbn", window=4)
    pair.client.send(bytes(4 * MSS))
    pair.flush(pair.client, drop=_numbered(pair, 0, 2))
    pair.now += RTT
    pair.flush(pair.server)
    assert pair.client.stats.dup_acks == 2
    assert pair.client.datagrams_to_send(pair.now) == []
    heard = pair.now
    assert pair.fire(pair.client) == pytest.approx(heard + RTT / 4)  # a quarter of the min RTT
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [0, 1, 2, 3]
    pair.exchange()
    assert _payload(pair) == bytes(4 * MSS)
    assert (pair.client.stats.fast_retransmits, pair.client.stats.timeouts) == (1, 0)


def test_gbn_a_lost_repair_is_found_by_the_first_duplicate_sent_after_it() -> None:
    pair = _pair("gbn", window=4)
    pair.client.send(bytes(4 * MSS))
    pair.flush(pair.client, drop=_numbered(pair, 0))
    pair.now += RTT
    pair.flush(pair.server)  # three duplicates: go back
    resent = pair.flush(pair.client, drop=_numbered(pair, 0))  # and 0 is lost again
    assert pair.data_seqs(pair.client, resent) == [0, 1, 2, 3]
    pair.now += RTT
    # The first duplicate caused by the new copy of 1 is enough while the repair is under way
    # and the path has shown no reordering: no reordering window, no timer.
    ack_from_1 = pair.server.datagrams_to_send(pair.now)[0]
    pair.client.receive_datagram(ack_from_1, pair.now)
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == [0, 1, 2, 3]
    assert (pair.client.stats.fast_retransmits, pair.client.stats.timeouts) == (2, 0)


def test_gbn_duplicates_from_copies_sent_before_going_back_do_not_go_back_again() -> None:
    pair = _pair("gbn", window=8)
    pair.client.send(bytes(8 * MSS))
    pair.flush(pair.client, drop=_numbered(pair, 0))
    pair.now += RTT
    acks = pair.server.datagrams_to_send(pair.now)  # seven duplicates, from the copies of 1..7
    for ack in acks[:3]:
        pair.client.receive_datagram(ack, pair.now)
    assert pair.data_seqs(pair.client, pair.flush(pair.client)) == list(range(8))  # the go-back
    # The other four were caused by copies sent before the go-back: they say nothing of the new 0.
    for ack in acks[3:]:
        pair.client.receive_datagram(ack, pair.now)
    assert pair.client.datagrams_to_send(pair.now) == []
    pair.now += RTT
    pair.exchange()
    assert _payload(pair) == bytes(8 * MSS)
    assert (pair.client.stats.fast_retransmits, pair.client.stats.timeouts) == (1, 0)
