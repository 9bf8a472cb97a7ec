"""Choosing upstream servers: smoothed RTT, backoff, dead and lame servers."""

from __future__ import annotations

import random

import pytest

from netlab.proto.dns_rrset import name_of
from netlab.proto.dns_servers import ServerTable

FAST, SLOW, NEW = ("192.0.2.1", 53), ("192.0.2.2", 53), ("192.0.2.3", 53)
ZONE = name_of("shop.test")


def test_never_measured_servers_first_then_the_fastest() -> None:
    table = ServerTable(random.Random(1))
    table.answered(FAST, 0.010)
    table.answered(SLOW, 0.200)
    assert table.choose([FAST, SLOW, NEW], ZONE, 0.0) == NEW
    assert table.choose([FAST, SLOW], ZONE, 0.0) == FAST


def test_passed_over_servers_are_tried_again_in_time() -> None:
    table = ServerTable(random.Random(1))
    table.answered(FAST, 0.010)
    table.answered(SLOW, 0.012)
    chosen = [table.choose([FAST, SLOW], ZONE, 0.0) for _ in range(50)]
    assert chosen[0] == FAST
    assert SLOW in chosen  # its SRTT decays while FAST is chosen


def test_timeouts_back_off_and_three_make_a_server_dead_for_a_while() -> None:
    table = ServerTable(random.Random(1), initial_rto=0.4, dead_after=3, dead_hold=60.0)
    timeouts = []
    for now in (0.0, 1.0, 2.0):
        timeouts.append(table.timeout(SLOW))
        table.timed_out(SLOW, now)
    assert timeouts == [0.4, 0.8, 1.6]
    assert table.is_dead(SLOW, 3.0)
    assert table.choose([SLOW], ZONE, 3.0) is None
    assert table.choose([SLOW, FAST], ZONE, 3.0) == FAST
    assert table.choose([SLOW], ZONE, 62.1) == SLOW


def test_an_answer_resets_the_backoff() -> None:
    table = ServerTable(random.Random(1), min_rto=0.1)
    table.timed_out(FAST, 0.0)
    table.answered(FAST, 0.005)
    assert table.timeout(FAST) == pytest.approx(0.1)  # SRTT + 4 RTTVAR, at least the minimum


def test_lameness_is_per_zone_and_expires() -> None:
    table = ServerTable(random.Random(1), lame_hold=600.0)
    table.mark_lame(FAST, ZONE, 0.0)
    assert not table.usable(FAST, ZONE, 1.0)
    assert table.usable(FAST, name_of("alpha.test"), 1.0)
    assert table.usable(FAST, ZONE, 600.0)


def test_edns_is_dropped_for_servers_that_reject_it() -> None:
    table = ServerTable(random.Random(1))
    assert table.edns(FAST)
    table.reject_edns(FAST)
    assert not table.edns(FAST)


def test_tables_are_bounded_and_can_forget() -> None:
    table = ServerTable(random.Random(1), max_servers=2)
    for i in range(5):
        table.answered((f"192.0.2.{10 + i}", 53), 0.01)
        table.mark_lame((f"192.0.2.{10 + i}", 53), ZONE, 0.0)
    assert table.srtt(("192.0.2.10", 53)) is None
    assert table.srtt(("192.0.2.14", 53)) is not None
    assert table.usable(("192.0.2.10", 53), ZONE, 1.0)  # its lame mark was evicted too
    table.forget()
    assert table.srtt(("192.0.2.14", 53)) is None
