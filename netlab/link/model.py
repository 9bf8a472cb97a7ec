"""A pure, seeded model of one direction of an impaired link.

Strategy: ``LinkModel.transmit(data, now)`` decides the fate of one datagram and returns its
arrivals as ``(absolute time, payload)`` pairs: none (lost), one, or two (duplicated), possibly
corrupted, delayed and reordered.  It keeps no clock and does no I/O; all randomness comes from the
``random.Random`` passed in, so the same seed and the same inputs give the same output.  The same
model drives the discrete-event simulator (``netlab.link.sim``) and the UDP relay of
``netlab link``.  The stages, in the order a packet meets them, follow Linux netem:

1. **Rate limit with a bounded queue.**  A transmitter of ``rate_bps`` serialises one packet at a
   time, taking ``size * 8 / rate_bps`` seconds each; packets wait in a FIFO whose capacity is
   ``queue_bytes`` (counting every packet not yet fully sent).  A packet that does not fit is
   dropped at the tail.
2. **Loss**, independent (``loss``) and/or bursty (``burst``: a Gilbert-Elliott two-state Markov
   chain, whose "bad" state loses packets in runs).
3. **Corruption**: with probability ``corrupt`` one or two bits are flipped at random positions.
   CRC-32 detects every 1- and 2-bit error at any datagram size, so the transport above must
   catch every corruption this model makes; real links also produce errors no CRC can see.
4. **Duplication**: with probability ``duplicate`` a second copy is delivered.
5. **Delay**: ``delay`` plus a uniform jitter in ``[-jitter, +jitter]`` (never arriving before it
   was sent); jitter alone reorders packets, as it does in netem.
6. **Reordering**: with probability ``reorder`` a copy is held back by ``reorder_delay`` (default:
   the larger of ``delay`` and 5 ms, times a random factor in [0.5, 1.5]) so later packets overtake it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ["GilbertElliott", "LinkModel", "LinkStats"]

MIN_REORDER_DELAY = 0.005  # seconds a reordered packet is held at least, when delay is 0


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a two-state Markov chain stepped once per packet.

    Attributes:
        p_good_to_bad: probability of moving to the bad state after a packet in the good state.
        p_bad_to_good: probability of leaving the bad state after a packet in it; with
            ``loss_bad = 1`` the mean burst of consecutive losses is ``1 / p_bad_to_good``.
        loss_good, loss_bad: the loss probability in each state.
    """

    p_good_to_bad: float
    p_bad_to_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if self.p_bad_to_good == 0.0:
            raise ValueError("p_bad_to_good must be > 0, or the link stays bad forever")

    @classmethod
    def from_loss(cls, mean_loss: float, mean_burst: float) -> GilbertElliott:
        """The chain (``loss_bad = 1``, ``loss_good = 0``) with this average loss and burst length."""
        if not 0.0 <= mean_loss < 1.0 or mean_burst < 1.0:
            raise ValueError(f"need 0 <= mean_loss < 1 and mean_burst >= 1, got {mean_loss}, {mean_burst}")
        leave = 1.0 / mean_burst
        # Stationary P(bad) = enter / (enter + leave) = mean_loss.
        enter = leave * mean_loss / (1.0 - mean_loss)
        return cls(p_good_to_bad=min(1.0, enter), p_bad_to_good=leave)

    @property
    def mean_loss(self) -> float:
        """The long-run loss rate."""
        bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)
        return bad * self.loss_bad + (1 - bad) * self.loss_good


@dataclass(slots=True)
class LinkStats:
    sent: int = 0  # datagrams offered to the link
    delivered: int = 0  # arrivals produced (duplicates included)
    lost: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    queue_dropped: int = 0


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


class LinkModel:
    """One direction of an impaired link.  See the module docstring for the stages.

    Raises:
        ValueError: a probability outside [0, 1], a negative time, a rate <= 0 or a queue < 1 byte.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        loss: float = 0.0,
        burst: GilbertElliott | None = None,
        corrupt: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        rate_bps: float | None = None,
        queue_bytes: int = 64 * 1024,
        reorder_delay: float | None = None,
    ) -> None:
        self._rng = rng
        self.loss = _probability("loss", loss)
        self.burst = burst
        self.corrupt = _probability("corrupt", corrupt)
        self.duplicate = _probability("duplicate", duplicate)
        self.reorder = _probability("reorder", reorder)
        if delay < 0 or jitter < 0 or (reorder_delay is not None and reorder_delay < 0):
            raise ValueError("delay, jitter and reorder_delay must be >= 0 seconds")
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError(f"rate_bps must be > 0, got {rate_bps}")
        if queue_bytes < 1:
            raise ValueError(f"queue_bytes must be >= 1, got {queue_bytes}")
        self.delay = delay
        self.jitter = jitter
        self.rate_bps = rate_bps
        self.queue_bytes = queue_bytes
        self.reorder_delay = max(delay, MIN_REORDER_DELAY) if reorder_delay is None else reorder_delay
        self.stats = LinkStats()
        self._bad = False  # Gilbert-Elliott state
        self._busy_until = 0.0  # when the transmitter finishes the last queued packet
        self._queue: deque[tuple[float, int]] = deque()  # (departure time, size) not yet sent
        self._queued = 0  # bytes in _queue

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting or being serialised, as of the latest ``transmit``."""
        return self._queued

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """The arrivals of ``data`` sent at ``now``: ``(absolute arrival time, payload)`` pairs."""
        stats, rng = self.stats, self._rng
        stats.sent += 1
        departure = now
        if self.rate_bps is not None:
            queue = self._queue
            while queue and queue[0][0] <= now:
                self._queued -= queue.popleft()[1]
            if self._queued + len(data) > self.queue_bytes:
                stats.queue_dropped += 1
                return []
            departure = max(now, self._busy_until) + len(data) * 8 / self.rate_bps
            self._busy_until = departure
            queue.append((departure, len(data)))
            self._queued += len(data)
        if self._lost():
            stats.lost += 1
            return []
        if self.corrupt and rng.random() < self.corrupt:
            data = self._flip_bits(data)
            stats.corrupted += 1
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            stats.duplicated += 1
        arrivals = []
        for _ in range(copies):
            when = departure + self.delay
            if self.jitter:
                when = max(departure, when + rng.uniform(-self.jitter, self.jitter))
            if self.reorder and rng.random() < self.reorder:
                when += self.reorder_delay * rng.uniform(0.5, 1.5)
                stats.reordered += 1
            arrivals.append((when, data))
        stats.delivered += copies
        return arrivals

    def _lost(self) -> bool:
        rng = self._rng
        if self.burst is not None:
            ge = self.burst
            lost = rng.random() < (ge.loss_bad if self._bad else ge.loss_good)
            # Step the chain after the packet: the state decides this packet, then may change.
            if rng.random() < (ge.p_bad_to_good if self._bad else ge.p_good_to_bad):
                self._bad = not self._bad
            if lost:
                return True
        return bool(self.loss) and rng.random() < self.loss

    def _flip_bits(self, data: bytes) -> bytes:
        if not data:
            return data
        damaged = bytearray(data)
        positions = self._rng.sample(range(len(data) * 8), k=min(self._rng.choice((1, 2)), len(data) * 8))
        for bit in positions:
            damaged[bit >> 3] ^= 0x80 >> (bit & 7)
        return bytes(damaged)
