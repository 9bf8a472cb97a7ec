"""Running services until Ctrl-C or SIGTERM, then shutting them down gracefully.

Strategy (as hypercorn does it): on the first SIGINT or SIGTERM the :class:`Lifetime`'s
``stopping`` event is set.  Services are then stopped one by one in the reverse of the order they
started in (a later one may stand on an earlier one, as everything stands on the lab): each stops
accepting new work when its own lifetime says so and lets its running sessions finish; the whole
nursery gets ``grace_period`` seconds for all that before it is cancelled.  A second signal
cancels at once.  A stop during start-up starts nothing more.  The process then exits with
status 0, which is what a service manager expects from a requested stop.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import trio

__all__ = ["Lifetime", "ServeFn", "Service", "run_services", "serve_connections", "serve_until_stopping"]

log = logging.getLogger(__name__)


class Lifetime:
    """Tells a service when to stop accepting work.

    ``run_services`` gives each service a lifetime of its own, under the process's: the process's
    stop reaches the services one by one, and a service that stops its own lifetime (a one-shot
    receiver that has its file) stops the whole process.
    """

    def __init__(self, parent: Lifetime | None = None) -> None:
        self.stopping = trio.Event()
        self._parent = parent

    def stop(self) -> None:
        self.stopping.set()
        if self._parent is not None:
            self._parent.stop()


class ServeFn(Protocol):
    """A service's entry point.

    It binds its sockets, calls ``task_status.started(lines)`` with human-readable lines saying
    where it listens, serves until ``lifetime.stopping`` is set, drains, and returns.
    """

    async def __call__(self, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None: ...


@dataclass(frozen=True)
class Service:
    name: str
    serve: ServeFn


async def serve_until_stopping(lifetime: Lifetime, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run()`` and cancel it when the lifetime starts stopping (for stateless servers)."""
    async with trio.open_nursery() as nursery:

        async def _watch() -> None:
            await lifetime.stopping.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(_watch)
        await run()
        nursery.cancel_scope.cancel()


async def serve_connections(
    handler: Callable[[trio.abc.Stream], Awaitable[None]],
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    lifetime: Lifetime,
    *,
    started: Callable[[], None],
    closing: Callable[[], None],
) -> None:
    """A stream server's graceful life: accept on ``listeners`` until ``lifetime`` stops, then
    stop accepting, call ``closing`` (sessions finish at their next command boundary) and return
    once every running connection has ended.  ``started`` runs once the listeners accept."""
    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as acceptor:
            await acceptor.start(
                partial(trio.serve_listeners, handler, list(listeners), handler_nursery=handlers)
            )
            started()
            await lifetime.stopping.wait()
            acceptor.cancel_scope.cancel()
        closing()


async def run_services(
    services: Sequence[Service],
    *,
    grace_period: float,
    on_started: Callable[[Service, list[str]], None],
    lifetime: Lifetime | None = None,
    task_status: trio.TaskStatus[Lifetime] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start every service in one nursery and run them until a signal (or ``lifetime.stop()``)."""
    lifetime = lifetime or Lifetime()
    services_scope = trio.CancelScope()

    async def _on_signals(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if lifetime.stopping.is_set():
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                services_scope.cancel()
                return
            log.info("%s: shutting down", signal.Signals(signum).name)
            lifetime.stop()

    async def _grace() -> None:
        await lifetime.stopping.wait()
        services_scope.deadline = trio.current_time() + grace_period

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as helpers:
            helpers.start_soon(_on_signals, signals)
            helpers.start_soon(_grace)
            with services_scope:
                async with trio.open_nursery() as nursery:
                    started: list[tuple[Lifetime, trio.Event]] = []
                    for service in services:
                        if lifetime.stopping.is_set():
                            break  # a stop during start-up: start nothing more
                        own, done = Lifetime(lifetime), trio.Event()
                        lines = await nursery.start(_run_one, service, own, done)
                        started.append((own, done))
                        on_started(service, lines)
                    task_status.started(lifetime)
                    await lifetime.stopping.wait()
                    # Later services may stand on earlier ones (everything on the lab, the proxy
                    # on the resolver): stop them in reverse order, each drained before the next.
                    for own, done in reversed(started):
                        own.stop()
                        await done.wait()
            helpers.cancel_scope.cancel()


async def _run_one(
    service: Service, lifetime: Lifetime, done: trio.Event, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    try:
        await service.serve(lifetime, task_status=task_status)
    finally:
        done.set()
