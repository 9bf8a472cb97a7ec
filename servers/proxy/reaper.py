"""Closing client connections that wait too long for their next request (RFC 9112 section 9.8).

Strategy: one task for every connection of the server, rather than a timer per request (which
would cost a cancel scope with a deadline on every request).
"""

from __future__ import annotations

from typing import Protocol

import trio

__all__ = ["IdleReaper"]


class Waiting(Protocol):
    """A connection waiting for a request; :meth:`time_out` ends the wait."""

    def time_out(self) -> None: ...


class IdleReaper:
    """Closes client connections that wait too long for their next request, all with one task.

    A timer per request would cost a cancel scope with a deadline on every request; instead a
    connection that starts waiting is noted with its deadline, and one task sleeps until the
    earliest.  Every wait gets the same timeout, so insertion order is deadline order and the
    earliest deadline is always the first entry.  At shutdown (:meth:`close_idle`) every waiting
    connection is closed at once, and busy ones close after their response (:attr:`closing`).
    """

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self.closing = False
        self._waiting: dict[Waiting, float] = {}
        self._wake = trio.Event()

    def waiting(self, conn: Waiting) -> None:
        self._waiting[conn] = trio.current_time() + self.idle_timeout
        if len(self._waiting) == 1:
            self._wake.set()

    def busy(self, conn: Waiting) -> None:
        self._waiting.pop(conn, None)

    def close_idle(self) -> None:
        self.closing = True
        for conn in list(self._waiting):
            conn.time_out()

    async def run(self) -> None:
        while True:
            if not self._waiting:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            conn, deadline = next(iter(self._waiting.items()))
            if trio.current_time() < deadline:
                await trio.sleep_until(deadline)
                continue
            del self._waiting[conn]
            conn.time_out()
