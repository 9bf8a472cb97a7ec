"""The link model: rates of each impairment, burstiness, exact serialisation, the queue, determinism."""

from __future__ import annotations

import random
import statistics

import pytest

from netlab.link.model import GilbertElliott, LinkModel
from netlab.transport.segment import Segment, SegmentType, decode_segment_untrusted, encode_segment

PACKETS = 20_000


def _send_many(link: LinkModel, n: int = PACKETS, size: int = 100) -> list[list[tuple[float, bytes]]]:
    data = bytes(size)
    return [link.transmit(data, now=i * 0.001) for i in range(n)]


@pytest.mark.parametrize("field", ["loss", "duplicate", "corrupt", "reorder"])
@pytest.mark.parametrize("rate", [0.01, 0.1, 0.3])
def test_impairment_rates_are_within_tolerance(field: str, rate: float) -> None:
    link = LinkModel(random.Random(42), delay=0.01, **{field: rate})  # type: ignore[arg-type]
    _send_many(link)
    counted = {"loss": link.stats.lost, "duplicate": link.stats.duplicated, "corrupt": link.stats.corrupted}
    observed = counted.get(field, link.stats.reordered) / PACKETS
    # Binomial standard deviation sqrt(p(1-p)/n) is at most 0.0033 here; allow 4 of them.
    assert observed == pytest.approx(rate, abs=4 * (rate * (1 - rate) / PACKETS) ** 0.5)


def test_loss_duplication_and_delivery_counts_add_up() -> None:
    link = LinkModel(random.Random(1), loss=0.2, duplicate=0.1)
    arrivals = _send_many(link)
    assert sum(len(a) for a in arrivals) == link.stats.delivered
    assert link.stats.delivered == PACKETS - link.stats.lost + link.stats.duplicated
    assert sum(1 for a in arrivals if not a) == link.stats.lost


def test_corruption_flips_one_or_two_bits_and_the_crc_sees_it() -> None:
    link = LinkModel(random.Random(3), corrupt=1.0)
    original = encode_segment(Segment(SegmentType.DATA, 1, 2, 3, b"payload" * 20))
    flips = set()
    for i in range(2000):
        ((_, damaged),) = link.transmit(original, now=float(i))
        diff = sum(bin(a ^ b).count("1") for a, b in zip(original, damaged, strict=True))
        flips.add(diff)
        assert decode_segment_untrusted(damaged) is None
    assert flips == {1, 2}


def test_gilbert_elliott_losses_come_in_bursts_of_the_configured_mean_length() -> None:
    chain = GilbertElliott.from_loss(mean_loss=0.1, mean_burst=4.0)
    assert chain.mean_loss == pytest.approx(0.1)
    link = LinkModel(random.Random(7), burst=chain)
    outcomes = [not arrivals for arrivals in _send_many(link, n=100_000)]
    bursts, run = [], 0
    for lost in outcomes:
        if lost:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert sum(outcomes) / len(outcomes) == pytest.approx(0.1, abs=0.01)
    assert statistics.mean(bursts) == pytest.approx(4.0, rel=0.1)
    # Independent loss at the same rate has a mean burst of 1/(1-p) ~ 1.1: clearly not bursty.
    assert statistics.mean(bursts) > 3


def test_rate_limit_serialisation_delays_are_exact() -> None:
    # 1000-byte packets at 1 Mbit/s take 8 ms each; all offered at t=0, they leave back to back.
    link = LinkModel(random.Random(0), rate_bps=1e6, delay=0.05, queue_bytes=10_000)
    arrivals = [link.transmit(bytes(1000), now=0.0)[0][0] for _ in range(5)]
    assert arrivals == pytest.approx([0.05 + 0.008 * (i + 1) for i in range(5)], rel=1e-12)
    # A packet offered after the queue drained starts at once.
    ((when, _),) = link.transmit(bytes(500), now=1.0)
    assert when == pytest.approx(1.0 + 0.004 + 0.05, rel=1e-12)


def test_queue_overflow_drops_at_the_tail_and_recovers_as_it_drains() -> None:
    link = LinkModel(random.Random(0), rate_bps=8e6, queue_bytes=3000)  # 1 ms per 1000 bytes
    results = [link.transmit(bytes(1000), now=0.0) for _ in range(5)]
    assert [bool(r) for r in results] == [True, True, True, False, False]
    assert link.stats.queue_dropped == 2
    assert link.queued_bytes == 3000
    assert link.transmit(bytes(1000), now=0.0015)  # one left the queue at t = 1 ms
    assert not link.transmit(bytes(1000), now=0.0015)


def test_delay_and_jitter_bounds() -> None:
    link = LinkModel(random.Random(5), delay=0.02, jitter=0.005)
    delays = [arrivals[0][0] - i * 0.001 for i, arrivals in enumerate(_send_many(link, n=5000))]
    assert min(delays) >= 0.015 - 1e-12
    assert max(delays) <= 0.025 + 1e-12
    assert statistics.mean(delays) == pytest.approx(0.02, abs=0.0005)
    # Jitter larger than the delay never delivers before sending.
    link = LinkModel(random.Random(5), delay=0.001, jitter=0.01)
    assert all(a[0][0] >= i * 0.001 for i, a in enumerate(_send_many(link, n=1000)))


def test_reordering_lets_later_packets_overtake() -> None:
    link = LinkModel(random.Random(9), delay=0.01, reorder=0.2)
    arrivals = [a[0][0] for a in _send_many(link, n=1000)]
    overtaken = sum(1 for i in range(len(arrivals) - 1) if arrivals[i] > arrivals[i + 1])
    assert overtaken > 100


def test_same_seed_same_output_and_different_seed_different_output() -> None:
    def run(seed: int) -> list[list[tuple[float, bytes]]]:
        link = LinkModel(
            random.Random(seed), loss=0.1, corrupt=0.05, duplicate=0.05, reorder=0.1, delay=0.01, jitter=0.002
        )
        return _send_many(link, n=2000)

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": 1.5}, "loss must be a probability"),
        ({"corrupt": -0.1}, "corrupt must be a probability"),
        ({"delay": -1.0}, "must be >= 0 seconds"),
        ({"rate_bps": 0.0}, "rate_bps must be > 0"),
        ({"queue_bytes": 0}, "queue_bytes must be >= 1"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LinkModel(random.Random(0), **kwargs)  # type: ignore[arg-type]


def test_bad_gilbert_elliott() -> None:
    with pytest.raises(ValueError, match="stays bad forever"):
        GilbertElliott(p_good_to_bad=0.1, p_bad_to_good=0.0)
    with pytest.raises(ValueError, match="mean_burst >= 1"):
        GilbertElliott.from_loss(mean_loss=0.1, mean_burst=0.5)
