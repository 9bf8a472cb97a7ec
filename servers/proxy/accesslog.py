"""The access log in Squid's native format, so that existing log tools read it.

One line per request, written when the request is finished::

    %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt
    1700000000.123     12 127.0.0.1 TCP_MEM_HIT/200 1393 GET http://a.test/x - HIER_NONE/- text/html

That is: the time (seconds.milliseconds), the elapsed milliseconds, the client address, the cache
result and HTTP status, the bytes sent to the client (head and body), the method, the URL, the
user ("-": no proxy authentication), how the response was obtained (HIER_DIRECT/<origin address>
or HIER_NONE/-), and the content type.  The result codes are Squid's: TCP_HIT, TCP_MEM_HIT,
TCP_MISS, TCP_REFRESH_UNMODIFIED, TCP_REFRESH_MODIFIED, TCP_REFRESH_FAIL_OLD, TCP_REFRESH_FAIL_ERR,
TCP_IMS_HIT, TCP_INM_HIT, TCP_CLIENT_REFRESH_MISS, TCP_TUNNEL, TCP_DENIED, TCP_OFFLINE_HIT, NONE,
with ``_ABORTED`` appended when the transfer was cut short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

__all__ = ["AccessLog", "Transaction", "format_line"]


@dataclass(slots=True)
class Transaction:
    """What the access log says about one request; filled in while it is handled."""

    start: float  # wall-clock seconds
    client: str
    method: str
    url: str
    tag: str = "NONE"
    status: int = 0
    bytes_sent: int = 0
    hierarchy: str = "HIER_NONE/-"
    content_type: str = "-"
    aborted: bool = False

    def direct(self, address: str) -> None:
        """The response came from the origin at ``address``."""
        self.hierarchy = f"HIER_DIRECT/{address}"


def format_line(t: Transaction, end: float) -> str:
    elapsed_ms = max(0, round((end - t.start) * 1000))
    tag = t.tag + ("_ABORTED" if t.aborted and not t.tag.endswith("_ABORTED") else "")
    url = t.url.replace(" ", "%20")
    return (
        f"{end:.3f} {elapsed_ms:6d} {t.client} {tag}/{t.status:03d} {t.bytes_sent} "
        f"{t.method} {url} - {t.hierarchy} {t.content_type or '-'}"
    )


class AccessLog:
    """Hands finished lines to a logger, several at a time under load.

    A log record costs more than serving a cached response, so lines gather in a list and a
    background task (:meth:`run`) emits them as one record whenever it next gets to run: right
    away when the proxy is quiet, once per scheduling round when it is busy.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lines: list[str] = []
        self._wake = trio.Event()

    def write(self, t: Transaction, end: float) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._lines.append(format_line(t, end))
            self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                self.flush()
        finally:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self._logger.info("%s", "\n".join(lines))
