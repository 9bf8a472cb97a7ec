"""Reading from a client under an idle timeout, interruptibly by a server shutdown.

Strategy: a line-protocol server (SMTP, POP3) spends most of a session waiting for the next
command, and a busy one starts thousands of such waits a second.  A cancel scope with a deadline
around each wait would cost more than handling the command does, so the waits of one server
share one timer instead: every session runs inside one cancel scope of its own
(:meth:`SessionWaits.run`), each wait records its deadline in a table, and one task (the
*reaper*, a system task started by the first wait) sleeps until the earliest deadline and
cancels the sessions still waiting then.  All waits of a server have the same idle limit, so
the table, kept in the order the waits began, is also in deadline order: its first entry is
the next to expire.

A shutdown (:meth:`SessionWaits.shut_down`) cancels every session waiting at that moment the
same way, and later waits end at once.  A session busy with work (receiving a message, say) is
not interrupted; it sees the shutdown at its next wait, and a wait can be marked as not
interruptible at all.  Only a waiting session is ever cancelled, so the cancellation always
lands in the wait; one that lands just as the data arrived still ends the session, as a timeout
at that instant would.  :meth:`SessionWaits.run` reports why a session was cut short, and the
caller answers in its protocol's words (SMTP's 421, POP3's silent close).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import trio

__all__ = ["SessionWaits", "WaitEnd", "Waiter"]


class WaitEnd(enum.Enum):
    IDLE = "idle timeout"
    SHUTDOWN = "server shutting down"


class SessionWaits:
    """The waits of one server's sessions, each limited to ``idle_limit`` seconds."""

    def __init__(self, idle_limit: float) -> None:
        self.idle_limit = idle_limit
        self.closing = trio.Event()
        #: The sessions waiting now, earliest deadline first.
        self._waiting: dict[Waiter, None] = {}
        self._someone_waits = trio.Event()
        self._reaper: trio.lowlevel.TrioToken | None = None  # the run the reaper works in

    def shut_down(self) -> None:
        """End every interruptible wait now, and make later ones end at once."""
        self.closing.set()
        for waiter in list(self._waiting):
            if waiter.interruptible:
                waiter.end(WaitEnd.SHUTDOWN)

    async def run(self, session: Callable[[Waiter], Awaitable[None]]) -> WaitEnd | None:
        """Run ``session``, which reads through the :class:`Waiter` it is given.

        Returns:
            Why the session was cut short in a wait, or None if it returned by itself.
        """
        waiter = Waiter(self)
        with waiter.scope:
            await session(waiter)
        return waiter.ended if waiter.scope.cancelled_caught else None

    def _add(self, waiter: Waiter) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._reaper is not token:
            self._reaper = token
            self._waiting.clear()  # waiters of an earlier run (a test's) are gone with it
            trio.lowlevel.spawn_system_task(self._reap, name=f"{__name__}.reaper")
        if not self._waiting:
            self._someone_waits.set()
        self._waiting[waiter] = None

    async def _reap(self) -> None:
        """Cancel each session still waiting at its deadline, earliest first."""
        while True:
            if not self._waiting:
                self._someone_waits = trio.Event()
                await self._someone_waits.wait()
                continue
            first = next(iter(self._waiting))
            if first.deadline > trio.current_time():
                # If it stops waiting before then, the next one is looked at after this sleep.
                await trio.sleep_until(first.deadline)
                continue
            first.end(WaitEnd.IDLE)


class Waiter:
    """One session's waits (see :meth:`SessionWaits.run`)."""

    def __init__(self, waits: SessionWaits) -> None:
        self.scope = trio.CancelScope()
        self.deadline = 0.0
        self.interruptible = True
        self.ended: WaitEnd | None = None
        self._waits = waits

    async def receive(
        self, stream: trio.abc.ReceiveStream, max_bytes: int, *, interruptible: bool = True
    ) -> bytes | bytearray:
        """The client's next bytes (b"" at EOF).

        An idle timeout, or a shutdown if ``interruptible``, ends the session instead: the
        ``Cancelled`` raised here unwinds it to :meth:`SessionWaits.run`.
        """
        waits = self._waits
        if interruptible and waits.closing.is_set():
            self.end(WaitEnd.SHUTDOWN)
            await trio.lowlevel.checkpoint()  # raises Cancelled
        self.deadline = trio.current_time() + waits.idle_limit
        self.interruptible = interruptible
        waits._add(self)
        try:
            data = await stream.receive_some(max_bytes)
        finally:
            waits._waiting.pop(self, None)
        if self.scope.cancel_called:
            await trio.lowlevel.checkpoint()  # cut short just as the data came: raises Cancelled
        return data

    @property
    def closing(self) -> bool:
        """The server is shutting down: finish what is under way, start nothing new."""
        return self._waits.closing.is_set()

    def end(self, why: WaitEnd) -> None:
        """Cut the session short while it waits (the reaper's and the shutdown's doing)."""
        self._waits._waiting.pop(self, None)
        if self.ended is None:
            self.ended = why
        self.scope.cancel()
