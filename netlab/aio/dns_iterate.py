"""Driving the resolver machine: upstream queries on fresh sockets, one timer, waiting clients.

Strategy: one :class:`~netlab.proto.dns_resolve.Resolver` machine serves every client question,
so its cache and its knowledge of servers are shared and identical questions coalesce.  trio runs
one task at a time, so there is no central loop or queue: whichever task has input for the
machine (a client with a question, an exchange whose socket received an answer, the timer) calls
it directly and then *pumps* it, which

* starts one task per new upstream query,
* wakes the clients whose answers are ready,
* cancels the exchanges the machine has closed, and
* moves the single timer's deadline to the machine's next one.

Each UDP query goes out on a new socket, so every query has a fresh source port chosen at random
by the kernel as well as a fresh random ID (RFC 5452 section 9.2): an off-path attacker must guess
both.  The machine decides which answers count (source, ID, question); the socket only carries
them.  TCP (after a truncated answer) uses one new connection per query, framed as RFC 1035
section 4.2.2 says.

``Upstream`` is the seam for tests: :class:`SocketUpstream` uses the real network, an in-memory
implementation drives the same code under ``MockClock``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket as _stdsocket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from netlab.aio.endpoint import MAX_DATAGRAM, Addr
from netlab.proto.dns_resolve import Answer, ExchangeClosed, NoReply, Resolved, Resolver, Step, UpstreamQuery
from netlab.proto.dns_rrset import Name
from netlab.proto.dns_tcp import DnsStream, EndOfStream, Message
from netlab.proto.dns_wire import DnsError, Transport

__all__ = ["IterativeResolver", "QuerySocket", "SocketUpstream", "Upstream", "resolve_once"]

log = logging.getLogger(__name__)

MAX_RECV = 65536  # octets per TCP read


class QuerySocket(Protocol):
    """A UDP socket of one upstream query's own, used for that query only."""

    def send(self, data: bytes) -> None:
        """Send ``data`` to the server now (UDP: best effort, errors surface as no answer)."""

    async def receive(self) -> tuple[bytes, Addr]:
        """The next datagram that arrives, with its source."""

    def close(self) -> None: ...


class Upstream(Protocol):
    """How the driver reaches authoritative servers."""

    def open_udp(self, server: Addr) -> QuerySocket: ...

    async def open_tcp(self, server: Addr) -> trio.abc.Stream: ...


class SocketUpstream:
    """The real network: a new UDP socket (random source port) or TCP connection per query."""

    def open_udp(self, server: Addr) -> QuerySocket:
        return _UdpQuerySocket(server)

    async def open_tcp(self, server: Addr) -> trio.abc.Stream:
        return await trio.open_tcp_stream(*server)


class _UdpQuerySocket:
    """A kernel UDP socket bound to a port the kernel picks at random, used for one query.

    Opening, sending and reading are plain non-blocking calls: the send happens the moment the
    machine asks for the query, and the only trip through trio's scheduler is the wait until an
    answer is readable (a resolver's cold latency is the sum of these steps, one per zone).
    """

    def __init__(self, server: Addr) -> None:
        family = _stdsocket.AF_INET6 if ":" in server[0] else _stdsocket.AF_INET
        raw = _stdsocket.socket(family, _stdsocket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            raw.bind(("::" if family == _stdsocket.AF_INET6 else "0.0.0.0", 0))
        except BaseException:
            raw.close()
            raise
        self._server = server
        self._raw = raw

    def send(self, data: bytes) -> None:
        # A fresh socket's send buffer is empty: BlockingIOError cannot happen in practice, and
        # if it did the query would simply time out and be sent again, as if lost on the way.
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            self._raw.sendto(data, self._server)

    async def receive(self) -> tuple[bytes, Addr]:
        while True:
            try:
                data, peer = self._raw.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, ConnectionRefusedError):
                # Nothing yet (or an ICMP error, which a spoofer could send as well: wait on).
                await trio.lowlevel.wait_readable(self._raw)
                continue
            return data, (peer[0], peer[1])

    def close(self) -> None:
        # The only task that waits on this socket is the one closing it: nobody to notify.
        self._raw.close()


@dataclass
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    answer: Answer | None = None


class IterativeResolver:
    """The machine with its I/O: ``await resolve(name, type)`` from any task while :meth:`run` runs.

    Args:
        machine: the resolving machine (its settings, cache and server table).
        upstream: how to reach servers; the real network by default.
        on_step: called with every upstream answer (and every exchange without one) when the
            machine traces.
    """

    def __init__(
        self,
        machine: Resolver,
        upstream: Upstream | None = None,
        *,
        on_step: Callable[[Step | NoReply], None] | None = None,
    ) -> None:
        self.machine = machine
        self.upstream: Upstream = upstream or SocketUpstream()
        self.on_step = on_step
        self.socket_errors = 0
        self._waiters: dict[int, _Waiter] = {}
        self._exchanges: dict[int, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._timer: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve questions until cancelled (start it with ``nursery.start``)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._timer_loop)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def resolve(self, qname: Name, qtype: int) -> Answer:
        """The answer to a question: from the cache at once, or after iterating."""
        now = trio.current_time()
        cached = self.machine.answer_from_cache(qname, qtype, now)
        if cached is not None:
            await trio.lowlevel.checkpoint()
            return cached
        if self._nursery is None:
            raise RuntimeError("IterativeResolver.run() is not running")
        waiter = _Waiter()
        self._waiters[self.machine.submit(qname, qtype, now)] = waiter
        self._pump()
        await waiter.done.wait()
        assert waiter.answer is not None
        return waiter.answer

    # -- pumping -----------------------------------------------------------------------------

    def _pump(self) -> None:
        machine = self.machine
        nursery = self._nursery
        assert nursery is not None
        failed: list[tuple[UpstreamQuery, OSError]] = []
        for query in machine.datagrams_to_send(trio.current_time()):
            scope = trio.CancelScope()
            self._exchanges[query.exchange] = scope
            if query.transport is Transport.TCP:
                nursery.start_soon(self._tcp_exchange, query, scope)
                continue
            try:
                sock = self.upstream.open_udp(query.server)
            except OSError as exc:  # e.g. no IPv6 here
                failed.append((query, exc))
                continue
            sock.send(query.wire)
            nursery.start_soon(self._udp_exchange, query, scope, sock)
        while (event := machine.next_event()) is not None:
            if isinstance(event, Resolved):
                waiter = self._waiters.pop(event.ticket, None)
                if waiter is not None:
                    waiter.answer = event.answer
                    waiter.done.set()
            elif isinstance(event, ExchangeClosed):
                closed = self._exchanges.pop(event.exchange, None)
                if closed is not None:
                    closed.cancel()
            elif self.on_step is not None:
                self.on_step(event)
        if self._timer is not None:
            self._timer.deadline = self._next_deadline()
        for query, error in failed:
            self._failed(query, error)

    def _next_deadline(self) -> float:
        timer = self.machine.get_timer()
        return math.inf if timer is None else timer

    async def _timer_loop(self) -> None:
        while True:
            self._timer = trio.CancelScope(deadline=self._next_deadline())
            with self._timer:
                await trio.sleep_forever()
            self.machine.handle_timer(trio.current_time())
            self._pump()

    def _failed(self, query: UpstreamQuery, exc: BaseException) -> None:
        log.debug("exchange %s with %s failed: %s", query.exchange, query.server, exc)
        self.socket_errors += 1
        self.machine.exchange_failed(query.exchange, trio.current_time())
        self._pump()

    # -- exchanges -----------------------------------------------------------------------------

    async def _udp_exchange(self, query: UpstreamQuery, scope: trio.CancelScope, sock: QuerySocket) -> None:
        try:
            with scope:
                while True:
                    data, peer = await sock.receive()
                    self.machine.receive_datagram(data, peer, trio.current_time(), exchange=query.exchange)
                    self._pump()
                    # A flood of forged datagrams must not keep the other tasks from running.
                    await trio.lowlevel.checkpoint()
        except OSError as exc:  # e.g. no route to the server
            self._failed(query, exc)
        finally:
            sock.close()

    async def _tcp_exchange(self, query: UpstreamQuery, scope: trio.CancelScope) -> None:
        with scope:
            try:
                stream = await self.upstream.open_tcp(query.server)
            except OSError as exc:
                self._failed(query, exc)
                return
            framer = DnsStream()
            try:
                async with stream:
                    await stream.send_all(framer.send(query.wire))
                    while True:
                        event = framer.next_event()
                        if isinstance(event, Message):
                            self.machine.receive_datagram(
                                event.data, query.server, trio.current_time(), exchange=query.exchange
                            )
                            self._pump()
                        elif isinstance(event, EndOfStream):
                            raise trio.BrokenResourceError("the server closed the connection")
                        else:
                            framer.receive_data(await stream.receive_some(MAX_RECV))
            except (OSError, trio.BrokenResourceError, DnsError) as exc:
                self._failed(query, exc)


async def resolve_once(
    machine: Resolver,
    qname: Name,
    qtype: int,
    *,
    upstream: Upstream | None = None,
    on_step: Callable[[Step | NoReply], None] | None = None,
) -> Answer:
    """Run ``machine`` for one question and return its answer (``netlab dig +trace``)."""
    resolver = IterativeResolver(machine, upstream, on_step=on_step)
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        answer = await resolver.resolve(qname, qtype)
        nursery.cancel_scope.cancel()
    return answer
