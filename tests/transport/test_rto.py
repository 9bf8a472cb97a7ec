"""The RFC 6298 estimator against worked numbers."""

from __future__ import annotations

import pytest

from netlab.transport.rto import RtoEstimator


def test_initial_rto_before_any_sample() -> None:
    assert RtoEstimator().rto == 1.0  # RFC 6298 section 2.1


def test_first_sample() -> None:
    # Section 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, K*RTTVAR) = 1 + 4*0.5.
    est = RtoEstimator(min_rto=0.2)
    est.sample(1.0)
    assert (est.srtt, est.rttvar, est.rto) == (1.0, 0.5, 3.0)


def test_second_sample_updates_rttvar_with_the_old_srtt() -> None:
    # Section 2.3: RTTVAR = 3/4*0.5 + 1/4*|1.0 - 2.0| = 0.625; SRTT = 7/8*1.0 + 1/8*2.0 = 1.125;
    # RTO = 1.125 + 4*0.625 = 3.625.
    est = RtoEstimator()
    est.sample(1.0)
    est.sample(2.0)
    assert est.rttvar == pytest.approx(0.625)
    assert est.srtt == pytest.approx(1.125)
    assert est.rto == pytest.approx(3.625)


def test_clock_granularity_is_the_floor_of_the_variance_term() -> None:
    # Identical samples drive RTTVAR towards 0; then RTO = SRTT + G.
    est = RtoEstimator(min_rto=0.001, granularity=0.01)
    for _ in range(200):
        est.sample(0.1)
    assert est.rto == pytest.approx(0.11, abs=1e-6)


def test_minimum_clamp() -> None:
    est = RtoEstimator(min_rto=0.2)
    est.sample(0.01)  # 0.01 + 4*0.005 = 0.03 -> 0.2
    assert est.rto == 0.2


def test_backoff_doubles_and_clamps_at_max() -> None:
    est = RtoEstimator(initial_rto=1.0, max_rto=60.0)
    seen = []
    for _ in range(8):
        est.backoff()
        seen.append(est.rto)
    assert seen == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_fresh_sample_ends_the_backoff() -> None:
    est = RtoEstimator()
    est.sample(1.0)
    est.backoff()
    est.backoff()
    assert est.rto == 12.0
    est.sample(1.0)  # RTTVAR = 0.375, SRTT = 1.0 -> 2.5
    assert est.rto == pytest.approx(2.5)


def test_progress_without_a_sample_ends_the_backoff_but_keeps_the_estimate() -> None:
    est = RtoEstimator()
    est.sample(1.0)
    est.backoff()
    est.progress()
    assert (est.srtt, est.rto) == (1.0, 3.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_rto <= max_rto"):
        RtoEstimator(min_rto=2.0, max_rto=1.0)
    with pytest.raises(ValueError, match="negative RTT"):
        RtoEstimator().sample(-0.1)
