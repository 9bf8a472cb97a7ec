"""Per-peer demultiplexing of one datagram socket into sessions.

Strategy (DESIGN.md, "Datagram servers"): a datagram server has exactly one receive loop per
socket.  The loop looks the sender's address up in a table of sessions and hands the datagram to
that session's bounded memory channel with ``send_nowait``.  A full channel means the session is
not keeping up; like a full socket buffer, the datagram is dropped and counted, and the protocol
above recovers by retransmitting (trio's DTLS does the same).  Nothing the peer sends can make the
loop block or grow memory without bound.

A datagram from an address with no session is offered to an ``accept(data, peer)`` function
supplied by the protocol.  It returns the coroutine function to run as the new session, or None
for a stranger's datagram that opens nothing (a stray ACK, garbage, a retransmission after the
session ended), which is dropped and counted.  Each session runs in its own task with its inbox
channel; when it returns, the peer is forgotten.

Stopping is graceful: once ``stopping`` is set no new session is accepted, and :meth:`serve`
returns when the last running session has finished.  The demultiplexer knows nothing of any
protocol, so TFTP, DNS and the reliable transport all use it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from netlab.aio.endpoint import Addr, DatagramEndpoint

__all__ = ["Accept", "DemuxStats", "PeerDemux", "Session"]

log = logging.getLogger(__name__)

#: A session: ``session(peer, inbox)`` runs until the exchange with ``peer`` is over.
Session = Callable[[Addr, trio.MemoryReceiveChannel[bytes]], Awaitable[None]]
#: Decides what a datagram from an unknown peer opens: a session, or nothing (None).
Accept = Callable[[bytes, Addr], Session | None]

DEFAULT_QUEUE = 64  # datagrams buffered per session before drops
DEFAULT_MAX_SESSIONS = 1024


@dataclass
class DemuxStats:
    """Counters of one demultiplexer (they only grow)."""

    received: int = 0
    sessions: int = 0  # sessions opened
    failed: int = 0  # sessions that ended with an unexpected exception
    dropped_full: int = 0  # the session's inbox was full
    dropped_stranger: int = 0  # from an unknown peer, and opened nothing
    refused: int = 0  # a new peer while stopping or at max_sessions


class PeerDemux:
    """Runs sessions for the peers of one datagram endpoint.

    Args:
        endpoint: the bound socket; sessions send on it directly.
        queue_size: datagrams buffered per session.
        max_sessions: concurrent sessions; new peers beyond it are refused (and counted).
    """

    def __init__(
        self,
        endpoint: DatagramEndpoint,
        *,
        queue_size: int = DEFAULT_QUEUE,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self.endpoint = endpoint
        self.stats = DemuxStats()
        self._queue_size = queue_size
        self._max_sessions = max_sessions
        self._inboxes: dict[Addr, trio.MemorySendChannel[bytes]] = {}
        self._accepting = True
        self._idle = trio.Event()

    @property
    def active(self) -> int:
        """Sessions running now."""
        return len(self._inboxes)

    async def serve(
        self,
        accept: Accept,
        *,
        stopping: trio.Event | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive and dispatch until cancelled, or until ``stopping`` is set and all sessions end."""
        async with trio.open_nursery() as nursery:
            if stopping is not None:
                nursery.start_soon(self._drain, stopping, nursery.cancel_scope)
            task_status.started()
            while True:
                data, peer = await self.endpoint.recvfrom()
                self.stats.received += 1
                self._dispatch(nursery, accept, data, peer)

    def _dispatch(self, nursery: trio.Nursery, accept: Accept, data: bytes, peer: Addr) -> None:
        inbox = self._inboxes.get(peer)
        if inbox is not None:
            try:
                inbox.send_nowait(data)
            except trio.WouldBlock:
                self.stats.dropped_full += 1
            except trio.BrokenResourceError:
                # The session has stopped reading and is on its way out.
                self.stats.dropped_stranger += 1
            return
        if not self._accepting or len(self._inboxes) >= self._max_sessions:
            self.stats.refused += 1
            log.debug("refused a new peer %s (%d sessions)", peer, len(self._inboxes))
            return
        session = accept(data, peer)
        if session is None:
            self.stats.dropped_stranger += 1
            return
        send, receive = trio.open_memory_channel[bytes](self._queue_size)
        send.send_nowait(data)
        self._inboxes[peer] = send
        self.stats.sessions += 1
        nursery.start_soon(self._run, session, peer, send, receive)

    async def _run(
        self,
        session: Session,
        peer: Addr,
        send: trio.MemorySendChannel[bytes],
        receive: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        try:
            async with receive:
                await session(peer, receive)
        except Exception:
            # One broken session must not take the server, and every other peer, down with it.
            self.stats.failed += 1
            log.exception("session with %s failed", peer)
        finally:
            del self._inboxes[peer]
            send.close()
            if not self._inboxes and not self._accepting:
                self._idle.set()

    async def _drain(self, stopping: trio.Event, scope: trio.CancelScope) -> None:
        await stopping.wait()
        self._accepting = False
        if self._inboxes:
            log.debug("waiting for %d session(s) to finish", len(self._inboxes))
            await self._idle.wait()
        scope.cancel()
