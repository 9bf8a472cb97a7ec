"""Reading from a client under an idle timeout, interruptibly by a server shutdown.

Strategy: a line-protocol server (SMTP, POP3) spends most of a session waiting for the next
command.  :meth:`SessionWaits.receive` does that wait inside a cancel scope with the idle deadline
and, when the wait may be interrupted, registers the scope so that :meth:`SessionWaits.shut_down`
can cancel every waiting session at once.  A session busy with work (receiving a message, say)
is not interrupted; it sees the shutdown at its next wait.  The caller learns why a wait ended and
answers in its protocol's words (SMTP's 421, POP3's silent close).
"""

from __future__ import annotations

import enum

import trio

__all__ = ["SessionWaits", "WaitEnd"]


class WaitEnd(enum.Enum):
    IDLE = "idle timeout"
    SHUTDOWN = "server shutting down"


class SessionWaits:
    """The waits of one server's sessions."""

    def __init__(self) -> None:
        self.closing = trio.Event()
        self._waiting: set[trio.CancelScope] = set()

    def shut_down(self) -> None:
        """End every interruptible wait now, and make later ones end at once."""
        self.closing.set()
        for scope in list(self._waiting):
            scope.cancel()

    async def receive(
        self, stream: trio.abc.ReceiveStream, max_bytes: int, idle_limit: float, *, interruptible: bool = True
    ) -> bytes | bytearray | WaitEnd:
        """The client's next bytes (b"" at EOF), or why there were none."""
        if interruptible and self.closing.is_set():
            return WaitEnd.SHUTDOWN
        with trio.move_on_after(idle_limit) as scope:
            if interruptible:
                self._waiting.add(scope)
            try:
                return await stream.receive_some(max_bytes)
            finally:
                self._waiting.discard(scope)
        return WaitEnd.SHUTDOWN if interruptible and self.closing.is_set() else WaitEnd.IDLE
