"""Terminal output shared by the command-line programs: progress bars and transfer summaries.

Strategy: a progress bar is for a person watching, so it appears only when stderr is a terminal
(rich draws it there, leaving stdout clean for the summary a script may parse); otherwise
:func:`progress` hands out a bar that does nothing.  Summaries are plain lines, the same on a
terminal and in a pipe.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from netlab.units import format_bytes, format_duration, format_rate

__all__ = ["Bar", "TransferSummary", "progress"]


class Bar(Protocol):
    def update(self, completed: int, total: int | None = None) -> None:
        """Show ``completed`` bytes (of ``total``, when it becomes known)."""


class _NoBar:
    def update(self, completed: int, total: int | None = None) -> None:
        pass


class _RichBar:
    def __init__(self, bar: Progress, task: object) -> None:
        self._bar = bar
        self._task = task

    def update(self, completed: int, total: int | None = None) -> None:
        if total is not None:
            self._bar.update(self._task, total=total)  # type: ignore[arg-type]
        self._bar.update(self._task, completed=completed)  # type: ignore[arg-type]


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Bar]:
    """A byte-count progress bar on stderr when it is a terminal, else one that draws nothing."""
    if not sys.stderr.isatty():
        yield _NoBar()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _RichBar(bar, bar.add_task(description, total=total))


class _Stats(Protocol):
    """The transport counters a summary reports (``netlab.transport`` ``TransportStats``)."""

    segments_sent: int
    retransmissions: int
    corrupt_dropped: int
    srtt: float | None
    rto: float


@dataclass(frozen=True)
class TransferSummary:
    """What one transfer did, as printed at its end."""

    nbytes: int
    elapsed: float  # seconds
    stats: _Stats

    @property
    def goodput(self) -> float:
        """Application bytes per second."""
        return self.nbytes / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        s = self.stats
        share = f" ({100 * s.retransmissions / s.segments_sent:.1f}%)" if s.segments_sent else ""
        rtt = "no sample" if s.srtt is None else format_duration(s.srtt)
        return [
            f"  {self.nbytes} bytes ({format_bytes(self.nbytes)}) in {format_duration(self.elapsed)}: "
            f"goodput {format_rate(self.goodput)}",
            f"  segments sent {s.segments_sent}, retransmissions {s.retransmissions}{share}",
            f"  RTT estimate {rtt} (RTO {format_duration(s.rto)}), "
            f"segments dropped as corrupt {s.corrupt_dropped}",
        ]
