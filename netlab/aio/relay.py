"""The link relay: any UDP conversation, sent across an emulated bad link.

Strategy: the relay listens on one socket.  The first datagram from a new client opens a relay
socket of its own for that client (as a NAT does), so the server sees one distinct address per
client and its replies can be told apart; replies arriving on that socket go back to the client
from the listening socket, so the client sees answers from the address it sent to.  The server
may answer from another port than the one it was asked on (TFTP gives every transfer a fresh
port, its transfer ID: RFC 1350 section 4), so a client's datagrams go to whichever port of the
server's host last answered that client; nothing from any other host is relayed.  Every
datagram goes through a :class:`LinkModel`-like impairment, one per direction (the link is
shared by all clients, as a real bottleneck is): it returns when each copy arrives, if at all.

Delivery is one heap and one task for the whole relay, never a task per datagram (spawning one
costs ~100 us, a heap push ~1 us): the task sleeps until the earliest arrival, and a receive loop
that schedules an earlier one pulls its deadline in.  Copies due now are sent at once by the loop
that received them.  A client that is silent in both directions for ``idle_timeout`` seconds is
forgotten and its socket closed, so the relay's resources stay bounded.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from netlab.aio.endpoint import Addr, DatagramEndpoint

__all__ = ["DirectionStats", "Impairment", "LinkRelay", "RelayStats"]

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 120.0  # seconds
DEFAULT_MAX_CLIENTS = 256


class Impairment(Protocol):
    """What the relay needs from a link model (``netlab.link.model.LinkModel``)."""

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]: ...


@dataclass
class DirectionStats:
    """One direction of the relay: datagrams in, and copies delivered out."""

    received: int = 0
    delivered: int = 0
    send_failed: int = 0  # the relay's own socket refused to send (closed, ICMP error...)


@dataclass
class RelayStats:
    clients: int = 0  # clients ever seen
    refused: int = 0  # new clients over max_clients
    expired: int = 0  # clients forgotten after idle_timeout
    upstream: DirectionStats = field(default_factory=DirectionStats)  # client -> server
    downstream: DirectionStats = field(default_factory=DirectionStats)  # server -> client


@dataclass(frozen=True)
class _Direction:
    link: Impairment
    stats: DirectionStats


@dataclass
class _Client:
    addr: Addr
    endpoint: DatagramEndpoint
    last_seen: float
    peer: Addr  # where this client's datagrams go: the target, or the port it last answered from


class LinkRelay:
    """Relays datagrams between clients of ``listen`` and the server at ``target``.

    Args:
        listen: the socket clients send to.
        target: the server's address (already resolved).
        upstream, downstream: the impairment of each direction.
        open_endpoint: makes a fresh socket for a new client (bound to an ephemeral port).
        idle_timeout: seconds of silence after which a client is forgotten.
        max_clients: concurrent clients; datagrams from more are dropped and counted.
    """

    def __init__(
        self,
        listen: DatagramEndpoint,
        target: Addr,
        *,
        upstream: Impairment,
        downstream: Impairment,
        open_endpoint: Callable[[], Awaitable[DatagramEndpoint]],
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.listen = listen
        self.target = target
        self.stats = RelayStats()
        self._up = _Direction(upstream, self.stats.upstream)
        self._down = _Direction(downstream, self.stats.downstream)
        self._open_endpoint = open_endpoint
        self._idle_timeout = idle_timeout
        self._max_clients = max_clients
        self._clients: dict[Addr, _Client] = {}
        # (arrival time, tie-breaker, socket to send from, destination, payload, direction)
        self._heap: list[tuple[float, int, DatagramEndpoint, Addr, bytes, DirectionStats]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay until cancelled; client sockets are closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_scheduled)
                task_status.started()
                while True:
                    data, addr = await self.listen.recvfrom()
                    client = self._clients.get(addr)
                    if client is None:
                        client = await self._open_client(nursery, addr)
                        if client is None:
                            continue
                    client.last_seen = trio.current_time()
                    await self._forward(self._up, data, client.endpoint, client.peer)
        finally:
            with trio.CancelScope(shield=True):
                for client in list(self._clients.values()):
                    await client.endpoint.aclose()
                self._clients.clear()

    async def _open_client(self, nursery: trio.Nursery, addr: Addr) -> _Client | None:
        if len(self._clients) >= self._max_clients:
            self.stats.refused += 1
            return None
        client = _Client(addr, await self._open_endpoint(), trio.current_time(), self.target)
        self._clients[addr] = client
        self.stats.clients += 1
        log.info("new client %s relayed from %s", addr, client.endpoint.local_address)
        nursery.start_soon(self._relay_replies, client)
        return client

    async def _relay_replies(self, client: _Client) -> None:
        """The server's replies to one client, until the client has been idle too long."""
        try:
            while trio.current_time() < client.last_seen + self._idle_timeout:
                with trio.move_on_at(client.last_seen + self._idle_timeout):
                    data, addr = await client.endpoint.recvfrom()
                    if addr[0] != self.target[0]:
                        continue  # not from the server's host: a relay socket is no open port
                    client.peer = addr
                    client.last_seen = trio.current_time()
                    await self._forward(self._down, data, self.listen, client.addr)
            self.stats.expired += 1
            log.info("client %s idle for %.0f s, forgotten", client.addr, self._idle_timeout)
        finally:
            if self._clients.get(client.addr) is client:
                del self._clients[client.addr]
            with trio.CancelScope(shield=True):
                await client.endpoint.aclose()

    async def _forward(self, direction: _Direction, data: bytes, via: DatagramEndpoint, dst: Addr) -> None:
        stats = direction.stats
        stats.received += 1
        now = trio.current_time()
        for arrival, payload in direction.link.transmit(data, now):
            if arrival <= now:
                await self._send(via, payload, dst, stats)
                continue
            heapq.heappush(self._heap, (arrival, next(self._order), via, dst, payload, stats))
            if self._sleep is not None and arrival < self._sleep.deadline:
                self._sleep.deadline = arrival

    async def _send(self, via: DatagramEndpoint, payload: bytes, dst: Addr, stats: DirectionStats) -> None:
        try:
            await via.sendto(payload, dst)
        except (OSError, trio.ClosedResourceError):
            # The client's socket was closed while its datagram sat in the heap.
            stats.send_failed += 1
            return
        stats.delivered += 1

    async def _deliver_scheduled(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as scope:
                self._sleep = scope
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, via, dst, payload, stats = heapq.heappop(self._heap)
                await self._send(via, payload, dst, stats)
