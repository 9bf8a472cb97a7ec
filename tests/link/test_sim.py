"""The discrete-event simulator: exact virtual times, bounded runs, and the transfer helper."""

from __future__ import annotations

import random

import pytest

from netlab.link.model import LinkModel
from netlab.link.sim import Simulator, transfer
from netlab.transport.engine import TransportParams


class Echo:
    """A toy datagram machine: answers every datagram after ``think`` seconds, ``limit`` times."""

    def __init__(self, limit: int, think: float = 0.0) -> None:
        self.limit, self.think = limit, think
        self.received: list[tuple[float, bytes]] = []
        self.outbox: list[bytes] = []
        self.timer: float | None = None
        self.pending: bytes | None = None

    def receive_datagram(self, data: bytes, now: float) -> None:
        self.received.append((now, data))
        if len(self.received) <= self.limit:
            self.pending, self.timer = data, now + self.think

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        assert self.pending is not None
        self.outbox.append(self.pending)
        self.timer = None


def _link(**kwargs: float) -> LinkModel:
    return LinkModel(random.Random(0), **kwargs)  # type: ignore[arg-type]


def test_ping_pong_in_exact_virtual_time() -> None:
    a, b = Echo(limit=3, think=0.5), Echo(limit=3)
    a.outbox.append(b"ping")
    sim = Simulator(a, b, _link(delay=0.1), _link(delay=0.2))
    outcome = sim.run(lambda: len(a.received) == 3)
    assert outcome.completed
    assert outcome.reason == "done"
    # Each round: 0.1 out, 0.2 back, 0.5 thinking at a.
    assert [t for t, _ in a.received] == pytest.approx([0.3, 1.1, 1.9])
    assert [t for t, _ in b.received] == pytest.approx([0.1, 0.9, 1.7])


def test_deadlock_is_reported_not_waited_for() -> None:
    a, b = Echo(limit=1), Echo(limit=1)
    a.outbox.append(b"x")
    outcome = Simulator(a, b, _link(loss=1.0), _link()).run(lambda: False)
    assert (outcome.completed, outcome.reason) == (False, "deadlock: nothing left to happen")


def test_event_and_time_limits_stop_an_endless_run() -> None:
    a, b = Echo(limit=10**9), Echo(limit=10**9)
    a.outbox.append(b"x")
    by_events = Simulator(a, b, _link(delay=0.01), _link(delay=0.01)).run(lambda: False, max_events=1000)
    assert not by_events.completed
    assert by_events.events == 1000
    assert "event limit" in by_events.reason
    a, b = Echo(limit=10**9), Echo(limit=10**9)
    a.outbox.append(b"x")
    by_time = Simulator(a, b, _link(delay=1.0), _link(delay=1.0)).run(lambda: False, max_time=50.0)
    assert not by_time.completed
    assert by_time.now <= 50.0
    assert "time limit" in by_time.reason


@pytest.mark.parametrize("protocol", ["gbn", "sr", "saw"])
def test_lossless_transfer_takes_the_time_the_link_allows(protocol: str) -> None:
    data = random.Random(1).randbytes(100_000)
    params = TransportParams(protocol=protocol, window=64, mss=1000)
    link = {"delay": 0.01, "rate_bps": 10e6, "queue_bytes": 1 << 20}
    result = transfer(data, params, _link(**link), _link(**link), seed=1)
    assert result.clean
    assert result.delivered == data
    assert result.failures == ()
    assert result.client.retransmissions == result.server.retransmissions == 0
    # Handshake 1 RTT + 100 segments of 1020 bytes at 10 Mbit/s + the last one-way delay, at least.
    floor = 0.02 + 100 * 1020 * 8 / 10e6 + 0.01
    if protocol == "saw":
        floor = 0.02 + 100 * (0.02 + (1020 + 20) * 8 / 10e6)
    assert floor <= result.duration <= floor * 1.1
    assert result.finished_at >= result.duration + params.linger


def test_transfer_reports_a_dead_link_as_not_clean_in_bounded_time() -> None:
    params = TransportParams(max_retries=3, initial_rto=0.5)
    result = transfer(b"data", params, _link(loss=1.0), _link(), seed=1)
    assert not result.clean
    assert result.delivered == b""
    assert result.failures == (
        "no answer to our SYN after 3 retransmissions",
        "deadlock: nothing left to happen",
    )
    assert result.finished_at == pytest.approx(0.5 + 1 + 2 + 4)


def test_empty_transfer() -> None:
    result = transfer(b"", TransportParams(), _link(), _link(), seed=3)
    assert result.clean
    assert result.delivered == b""
