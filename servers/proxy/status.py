"""Counters, and the status page at ``http://<proxy>/netlab/status``.

Strategy: :class:`Stats` adds up the access-log transactions as they finish, so the page and the
log always agree.  A hit is a request answered with a stored response (whether or not it was
revalidated first); a miss is one whose response came from the origin.  The page is plain HTML
with no scripts, rendered on request from the counters and the store.

With several worker processes (``--workers``) each counts its own requests, and a client reaches
whichever the kernel picks; so each worker also reports its counters to the others through a
small file in the cache directory (:class:`WorkerReports`), every ``REPORT_INTERVAL`` seconds,
and the page adds the other workers' latest reports to its own counters.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from netlab.store.http_store import HttpStore
from servers.proxy.accesslog import Transaction

__all__ = ["HIT_TAGS", "MISS_TAGS", "REPORT_INTERVAL", "Stats", "WorkerReports", "render_status"]

log = logging.getLogger(__name__)

REPORT_INTERVAL = 2.0  # seconds between a worker's reports of its counters to the others

HIT_TAGS = frozenset(
    {
        "TCP_HIT",
        "TCP_MEM_HIT",
        "TCP_IMS_HIT",
        "TCP_INM_HIT",
        "TCP_REFRESH_UNMODIFIED",
        "TCP_REFRESH_FAIL_OLD",
    }
)
MISS_TAGS = frozenset(
    {
        "TCP_MISS",
        "TCP_REFRESH_MODIFIED",
        "TCP_REFRESH_FAIL_ERR",
        "TCP_CLIENT_REFRESH_MISS",
        "TCP_SWAPFAIL_MISS",
    }
)


@dataclass
class Stats:
    started: float
    requests: int = 0
    by_tag: Counter[str] = field(default_factory=Counter)
    bytes_to_clients: int = 0
    hit_bytes: int = 0
    connections: int = 0
    active_connections: int = 0
    stale_served: int = 0
    background_revalidations: int = 0

    def record(self, t: Transaction) -> None:
        self.requests += 1
        self.by_tag[t.tag] += 1
        self.bytes_to_clients += t.bytes_sent
        if t.tag in HIT_TAGS:
            self.hit_bytes += t.bytes_sent

    @property
    def hits(self) -> int:
        return sum(self.by_tag[t] for t in HIT_TAGS)

    @property
    def misses(self) -> int:
        return sum(self.by_tag[t] for t in MISS_TAGS)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_tag": dict(self.by_tag),
            "bytes_to_clients": self.bytes_to_clients,
            "hit_bytes": self.hit_bytes,
            "connections": self.connections,
            "active_connections": self.active_connections,
            "stale_served": self.stale_served,
            "background_revalidations": self.background_revalidations,
        }

    def plus(self, report: dict[str, Any]) -> Stats:
        """These counters and those of another worker's report (from :meth:`to_json`)."""
        by_tag = Counter({str(tag): int(n) for tag, n in dict(report.get("by_tag", {})).items()})
        total = Stats(self.started, by_tag=self.by_tag + by_tag)
        for name in _SUMMED:
            setattr(total, name, getattr(self, name) + int(report.get(name, 0)))
        return total


_SUMMED = (
    "requests",
    "bytes_to_clients",
    "hit_bytes",
    "connections",
    "active_connections",
    "stale_served",
    "background_revalidations",
)


class WorkerReports:
    """The counters of every worker process, through one small JSON file per worker.

    Worker ``number`` of ``count`` writes its own to ``<directory>/<number>.json`` (atomically:
    written aside, then renamed) every ``REPORT_INTERVAL`` seconds and when it stops; the parent
    process empties the directory before the workers start (:meth:`clear`).
    """

    def __init__(self, directory: Path, number: int, count: int, stats: Stats) -> None:
        self.directory = directory
        self.number = number
        self.count = count
        self.stats = stats

    @staticmethod
    def clear(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for report in directory.glob("*.json"):
            report.unlink(missing_ok=True)

    async def run(self) -> None:
        """Report every ``REPORT_INTERVAL`` seconds, and once more on the way out."""
        try:
            while True:
                await trio.sleep(REPORT_INTERVAL)
                await self.report()
        finally:
            self._write(self.stats.to_json())  # small: no need to leave the cancelled task

    async def report(self) -> None:
        """Write this worker's counters now."""
        report = self.stats.to_json()
        await trio.to_thread.run_sync(self._write, report)

    async def total(self) -> Stats:
        """This worker's counters now, plus the others' latest reports."""
        reports = await trio.to_thread.run_sync(self._read_others)
        total = self.stats
        for report in reports:
            total = total.plus(report)
        return total

    def _write(self, report: dict[str, Any]) -> None:
        path = self.directory / f"{self.number}.json"
        aside = path.with_suffix(".tmp")
        try:
            aside.write_text(json.dumps(report), encoding="utf-8")
            os.replace(aside, path)
        except OSError as exc:
            log.warning("could not report this worker's counters: %s", exc)

    def _read_others(self) -> list[dict[str, Any]]:
        reports = []
        for number in range(self.count):
            if number == self.number:
                continue
            with contextlib.suppress(OSError, ValueError):  # not reported yet, or being replaced
                reports.append(json.loads((self.directory / f"{number}.json").read_text(encoding="utf-8")))
        return reports


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def render_status(
    stats: Stats, store: HttpStore, *, now: float, idle_upstream: int, workers: int = 1, largest: int = 10
) -> bytes:
    """The status page as UTF-8 HTML; with several ``workers``, ``stats`` are all of theirs."""
    ratio = stats.hit_ratio
    byte_ratio = stats.hit_bytes / stats.bytes_to_clients if stats.bytes_to_clients else 0.0
    rows = [
        ("Uptime", f"{now - stats.started:.0f} s"),
        ("Requests", f"{stats.requests}"),
        ("Hits", f"{stats.hits}"),
        ("Misses", f"{stats.misses}"),
        ("Hit ratio", f"{ratio:.1%}"),
        ("Bytes to clients", _size(stats.bytes_to_clients)),
        ("Bytes served from the cache", f"{_size(stats.hit_bytes)} ({byte_ratio:.1%})"),
        ("Client connections (open / total)", f"{stats.active_connections} / {stats.connections}"),
        ("Idle connections to origins", f"{idle_upstream}"),
        ("Stored objects", f"{store.object_count}"),
        ("Stored bytes (disk)", f"{_size(store.bytes_stored)} of {_size(store.max_bytes)}"),
        ("Memory tier", f"{_size(store.memory_used)} of {_size(store.memory_bytes)}"),
    ]
    if workers > 1:
        note = f"{workers}: the counters are all of theirs, the others' as of their last report"
        rows.insert(0, ("Worker processes", f"{note} (every {REPORT_INTERVAL:g} s)"))
        rows[-1] = ("Memory tier (this worker's)", rows[-1][1])
    counters = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    tags = "".join(
        f"<tr><th>{html.escape(tag)}</th><td>{count}</td></tr>" for tag, count in sorted(stats.by_tag.items())
    )
    objects = "".join(
        f"<tr><td>{_size(e.size)}</td><td>{html.escape(e.stored.content_type or '-')}</td>"
        f"<td><code>{html.escape(e.key)}</code></td></tr>"
        for e in store.largest(largest)
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>netlab proxy status</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
th,td{{text-align:left;padding:.2em .8em;border-bottom:1px solid #ddd}} th{{font-weight:600}}</style></head>
<body><h1>netlab proxy</h1>
<h2>Counters</h2><table>{counters}</table>
<h2>Results</h2><table>{tags or "<tr><td>no requests yet</td></tr>"}</table>
<h2>Largest cached objects</h2><table><tr><th>Size</th><th>Type</th><th>URL</th></tr>{objects}</table>
</body></html>
"""
    return page.encode("utf-8")
