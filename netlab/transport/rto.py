"""The retransmission timeout estimator of RFC 6298.

Strategy: keep SRTT and RTTVAR as the RFC defines them (section 2), take samples only from
segments that were never retransmitted (Karn's algorithm, section 3), double the timeout on every
expiry (section 5.5) and keep the doubled value until a fresh sample arrives or new data is
acknowledged (``progress``), and clamp the result between a lower and an upper bound.

RFC 6298 asks for a 1 s minimum (section 2.4) because TCP's delayed ACKs can hold an ACK back for
up to 500 ms.  Our receivers acknowledge at once, so the default minimum here is lower; a caller
that wants the RFC's figure passes ``min_rto=1.0``.  TFTP (RFC 1350/2349) uses the same
estimator with the peer's negotiated timeout as the initial value.
"""

from __future__ import annotations

__all__ = ["ALPHA", "BETA", "K", "RtoEstimator"]

ALPHA = 1 / 8  # RFC 6298 section 2.3: SRTT gain
BETA = 1 / 4  # RFC 6298 section 2.3: RTTVAR gain
K = 4  # RFC 6298 section 2.2: RTTVAR multiplier
DEFAULT_INITIAL_RTO = 1.0  # seconds; RFC 6298 section 2.1
DEFAULT_MIN_RTO = 0.2  # seconds; see the module docstring
DEFAULT_MAX_RTO = 60.0  # seconds; RFC 6298 section 2.5 allows an upper bound of at least 60 s
DEFAULT_GRANULARITY = 0.001  # seconds; G, the clock granularity (epoll rounds to 1 ms)


class RtoEstimator:
    """SRTT, RTTVAR and the current RTO, with backoff.

    Args:
        initial_rto: the RTO before the first sample (seconds).
        min_rto, max_rto: bounds on every computed or backed-off RTO (seconds).
        granularity: the clock granularity G of RFC 6298 section 2 (seconds).
    """

    def __init__(
        self,
        *,
        initial_rto: float = DEFAULT_INITIAL_RTO,
        min_rto: float = DEFAULT_MIN_RTO,
        max_rto: float = DEFAULT_MAX_RTO,
        granularity: float = DEFAULT_GRANULARITY,
    ) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError(f"need 0 < min_rto <= max_rto, got {min_rto} and {max_rto}")
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self._base_rto = self._clamp(initial_rto)
        self.backoffs = 0

    @property
    def rto(self) -> float:
        """The timeout to arm now: the computed RTO doubled once per unanswered expiry."""
        return self._clamp(self._base_rto * (1 << min(self.backoffs, 30)))

    def sample(self, rtt: float) -> None:
        """Feed one round-trip measurement (seconds) from a segment sent exactly once.

        Karn's rule is the caller's part: never pass a sample from a retransmitted segment.
        """
        if rtt < 0:
            raise ValueError(f"negative RTT sample {rtt}")
        if self.srtt is None or self.rttvar is None:
            # RFC 6298 section 2.2: the first measurement.
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            # RFC 6298 section 2.3: RTTVAR first, using the old SRTT.
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self._base_rto = self._clamp(self.srtt + max(self.granularity, K * self.rttvar))
        # A fresh sample ends the backoff (RFC 6298 section 5, note after 5.7).
        self.backoffs = 0

    def progress(self) -> None:
        """New data was acknowledged, but without a usable sample: end the backoff anyway.

        RFC 6298 (note after 5.7) lets only a fresh measurement collapse a backed-off RTO.  A
        Go-Back-N sender on a lossy path resends nearly every segment before it is acknowledged,
        so Karn's rule leaves it almost no measurements and the RTO would stay at its maximum for
        the rest of the transfer.  An acknowledgement of new data shows the path delivers again,
        so the estimate from SRTT and RTTVAR is trusted again; samples still obey Karn's rule.
        """
        self.backoffs = 0

    def backoff(self) -> None:
        """The retransmission timer expired: double the RTO (RFC 6298 section 5.5)."""
        if self._base_rto * (1 << min(self.backoffs, 30)) < self.max_rto:
            self.backoffs += 1

    def _clamp(self, value: float) -> float:
        return min(self.max_rto, max(self.min_rto, value))
