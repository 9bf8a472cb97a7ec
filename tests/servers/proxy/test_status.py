"""Counters across worker processes, and what the status page says of them."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing

from servers.proxy.accesslog import Transaction
from servers.proxy.status import REPORT_INTERVAL, Stats, WorkerReports, render_status
from tests.store.test_http_store import open_store


def finished(tag: str, size: int) -> Transaction:
    return Transaction(0.0, "127.0.0.1", "GET", "http://a.test/", tag=tag, status=200, bytes_sent=size)


async def test_workers_add_up_each_others_reports(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reports = tmp_path / "workers"
    WorkerReports.clear(reports)
    (reports / "7.json").write_text("{}")  # left by an earlier run with more workers
    WorkerReports.clear(reports)
    mine, theirs = Stats(started=0.0), Stats(started=0.0)
    mine.record(finished("TCP_MEM_HIT", 100))
    theirs.record(finished("TCP_MISS", 50))
    theirs.record(finished("TCP_MEM_HIT", 10))
    me, them = WorkerReports(reports, 0, 2, mine), WorkerReports(reports, 1, 2, theirs)
    assert (await me.total()).requests == 1  # the other has not reported yet
    await them.report()
    total = await me.total()
    assert (total.requests, total.hits, total.misses) == (3, 2, 1)
    assert (total.bytes_to_clients, total.hit_bytes, total.by_tag["TCP_MEM_HIT"]) == (160, 110, 2)
    theirs.record(finished("TCP_MISS", 1))  # not reported yet: the page lags a little
    assert (await me.total()).requests == 3
    # A running worker reports every REPORT_INTERVAL seconds, and once more as it stops.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(them.run)
        await trio.sleep(REPORT_INTERVAL / 2)
        nursery.cancel_scope.cancel()
    assert json.loads((reports / "1.json").read_text())["requests"] == 3
    assert sorted(p.name for p in reports.iterdir()) == ["1.json"]

    store = await open_store(tmp_path / "cache")
    page = render_status(total, store, now=10.0, idle_upstream=0, workers=2).decode()
    assert "<th>Worker processes</th><td>2: the counters are all of theirs" in page
    assert "<th>Requests</th><td>3</td>" in page
    assert "Worker processes" not in render_status(mine, store, now=10.0, idle_upstream=0).decode()
    await store.aclose()
