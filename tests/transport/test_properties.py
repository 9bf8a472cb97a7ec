"""End-to-end properties over the simulator: whatever the link does, the bytes arrive exactly once."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.link.model import LinkModel
from netlab.link.sim import transfer
from netlab.transport.engine import TransportParams

# Enough retries and linger that the chance of giving up on a 30%-loss link is negligible
# (0.4 ** 40 per stalled segment); the point is correctness, not the retry limit.
PATIENT = {"mss": 500, "max_retries": 40, "linger": 60.0, "max_rto": 5.0}
WINDOWS = {"gbn": 16, "sr": 16, "saw": 1}


def _links(seed: int, **impairments: float) -> tuple[LinkModel, LinkModel]:
    rng = random.Random(seed)
    return (
        LinkModel(random.Random(rng.getrandbits(64)), **impairments),  # type: ignore[arg-type]
        LinkModel(random.Random(rng.getrandbits(64)), **impairments),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(0, 20_000),
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.3),
    corrupt=st.floats(0.0, 0.1),
    duplicate=st.floats(0.0, 0.1),
    reorder=st.floats(0.0, 0.2),
    jitter=st.floats(0.0, 0.005),
)
def test_impaired_link_delivers_exactly_the_bytes_sent(
    protocol: str,
    size: int,
    seed: int,
    loss: float,
    corrupt: float,
    duplicate: float,
    reorder: float,
    jitter: float,
) -> None:
    data = random.Random(seed).randbytes(size)
    params = TransportParams(protocol=protocol, window=WINDOWS[protocol], **PATIENT)  # type: ignore[arg-type]
    link_ab, link_ba = _links(
        seed, loss=loss, corrupt=corrupt, duplicate=duplicate, reorder=reorder, delay=0.01, jitter=jitter
    )
    result = transfer(data, params, link_ab, link_ba, seed)
    assert result.delivered == data
    assert result.clean, result.failures


@pytest.mark.parametrize(("protocol", "window"), [("gbn", 7), ("sr", 4), ("saw", 1)])
def test_wraparound_with_three_bit_sequence_numbers(protocol: str, window: int) -> None:
    # 3000 segments: the 3-bit space wraps 375 times.  Loss, corruption and duplication but no
    # reordering: with k = 3 a segment overtaken by a whole window's worth would be ambiguous,
    # which is why real protocols take k large.
    data = random.Random(3).randbytes(30_000)
    params = TransportParams(
        protocol=protocol, window=window, seq_bits=3, mss=10, max_retries=40, linger=60.0
    )
    link_ab, link_ba = _links(5, loss=0.1, corrupt=0.05, duplicate=0.05, delay=0.01)
    result = transfer(data, params, link_ab, link_ba, seed=5)
    assert result.delivered == data
    assert result.clean, result.failures
    assert result.client.retransmissions > 100
    assert result.client.corrupt_dropped + result.server.corrupt_dropped > 50
