"""Running services until Ctrl-C or SIGTERM, then shutting them down gracefully.

Strategy (as hypercorn does it): on the first SIGINT or SIGTERM the :class:`Lifetime`'s
``stopping`` event is set.  Every service stops accepting new work when it sees it and lets its
running sessions finish; the whole nursery gets ``grace_period`` seconds for that before it is
cancelled.  A second signal cancels at once.  The process then exits with status 0, which is
what a service manager expects from a requested stop.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

__all__ = ["Lifetime", "ServeFn", "Service", "run_services", "serve_until_stopping"]

log = logging.getLogger(__name__)


class Lifetime:
    """Shared by the services of one process: tells them when to stop accepting work."""

    def __init__(self) -> None:
        self.stopping = trio.Event()

    def stop(self) -> None:
        self.stopping.set()


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
                    for service in services:
                        lines = await nursery.start(service.serve, lifetime)
                        on_started(service, lines)
                    task_status.started(lifetime)
                    # Services return once they have drained; until then the nursery waits.
                    await lifetime.stopping.wait()
            helpers.cancel_scope.cancel()
