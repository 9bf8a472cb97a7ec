"""Counters, and the status page at ``http://<proxy>/netlab/status``.

Strategy: :class:`Stats` adds up the access-log transactions as they finish, so the page and the
log always agree.  A hit is a request answered with a stored response (whether or not it was
revalidated first); a miss is one whose response came from the origin.  The page is plain HTML
with no scripts, rendered on request from the counters and the store.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from netlab.store.http_store import HttpStore
from servers.proxy.accesslog import Transaction

__all__ = ["HIT_TAGS", "MISS_TAGS", "Stats", "render_status"]

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


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def render_status(
    stats: Stats, store: HttpStore, *, now: float, idle_upstream: int, largest: int = 10
) -> bytes:
    """The status page as UTF-8 HTML."""
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
