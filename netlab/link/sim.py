"""A discrete-event simulator: two datagram machines joined by two ``LinkModel``s, in virtual time.

Strategy: one heap of datagram arrivals ordered by (virtual time, insertion order), plus each
machine's own ``get_timer()``.  The simulator repeatedly takes whichever comes first, advances
``now`` to it, hands the datagram to ``receive_datagram`` or calls ``handle_timer``, lets that
side's application hook react to the machine's events, and pushes whatever the machine now wants to
send through its outgoing link.  Nothing sleeps and nothing is random except what the seeded link
models and machines do, so a run is exactly repeatable and hours of virtual time take
milliseconds.  Every run is bounded by a virtual-time limit and an event-count limit, and reports
failure instead of looping forever; a run in which nothing is scheduled and the goal is not met
is a deadlock and also ends.

It is generic over any datagram machine (the shape of DESIGN.md: ``receive_datagram``,
``datagrams_to_send``, ``get_timer``, ``handle_timer``); ``transfer()`` is the ready-made case of
one transport connection sending bytes to another.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from netlab.link.model import LinkModel
from netlab.transport.engine import Connection, Role, TransportParams, TransportStats
from netlab.transport.events import Closed, ConnectionFailed, DataReceived, EndOfData

__all__ = ["DatagramMachine", "SimOutcome", "Simulator", "TransferResult", "transfer"]

DEFAULT_MAX_TIME = 24 * 3600.0  # virtual seconds
DEFAULT_MAX_EVENTS = 10_000_000


class DatagramMachine(Protocol):
    """What the simulator drives (``next_event`` is the application hook's business)."""

    def receive_datagram(self, data: bytes, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[bytes]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


#: Called with ``now`` after its machine did something, to consume events and feed the machine.
AppHook = Callable[[float], None]


@dataclass(frozen=True)
class SimOutcome:
    completed: bool  # the goal was reached
    reason: str  # "done", or why the run stopped
    now: float  # virtual time at the end
    events: int  # arrivals and timer expiries processed


class Simulator:
    """Machines ``a`` and ``b``; ``link_ab`` carries a's datagrams to b, ``link_ba`` the reverse.

    Args:
        app_a, app_b: hooks run after each step of their machine (and once at the start).
        start: the virtual time at which the run starts.
    """

    def __init__(
        self,
        a: DatagramMachine,
        b: DatagramMachine,
        link_ab: LinkModel,
        link_ba: LinkModel,
        *,
        app_a: AppHook | None = None,
        app_b: AppHook | None = None,
        start: float = 0.0,
    ) -> None:
        self.machines = (a, b)
        self.links = (link_ab, link_ba)
        self.apps = (app_a, app_b)
        self.now = start
        self.events = 0
        self._arrivals: list[tuple[float, int, int, bytes]] = []  # (time, order, to, payload)
        self._order = itertools.count()

    def _step_done(self, side: int) -> None:
        """After machine ``side`` acted: its application reacts, then its datagrams go out."""
        app = self.apps[side]
        if app is not None:
            app(self.now)
        now, link, to = self.now, self.links[side], 1 - side
        for datagram in self.machines[side].datagrams_to_send(now):
            for when, payload in link.transmit(datagram, now):
                heapq.heappush(self._arrivals, (when, next(self._order), to, payload))

    def run(
        self,
        until: Callable[[], bool],
        *,
        max_time: float = DEFAULT_MAX_TIME,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> SimOutcome:
        """Run until ``until()`` is true, a limit is reached, or nothing is left to happen."""
        a, b = self.machines
        arrivals = self._arrivals
        self._step_done(0)
        self._step_done(1)
        while not until():
            if self.events >= max_events:
                return SimOutcome(False, f"event limit of {max_events} reached", self.now, self.events)
            t_a, t_b = a.get_timer(), b.get_timer()
            t_net = arrivals[0][0] if arrivals else None
            candidates = [t for t in (t_net, t_a, t_b) if t is not None]
            if not candidates:
                return SimOutcome(False, "deadlock: nothing left to happen", self.now, self.events)
            when = min(candidates)
            if when > max_time:
                return SimOutcome(False, f"virtual time limit of {max_time} s reached", self.now, self.events)
            self.now = max(self.now, when)
            self.events += 1
            if t_net is not None and t_net == when:
                _, _, side, payload = heapq.heappop(arrivals)
                self.machines[side].receive_datagram(payload, self.now)
            else:
                side = 0 if t_a is not None and t_a == when else 1
                self.machines[side].handle_timer(self.now)
            self._step_done(side)
        return SimOutcome(True, "done", self.now, self.events)


@dataclass(frozen=True)
class TransferResult:
    """What ``transfer`` observed."""

    delivered: bytes  # what the server's application received, in order
    duration: float  # virtual seconds from the start until the server saw the end of data
    finished_at: float  # virtual seconds from the start until the run stopped
    client: TransportStats
    server: TransportStats
    clean: bool  # both sides reached Closed, neither failed, and the run completed
    failures: tuple[str, ...]  # ConnectionFailed reasons, and why the run stopped if it failed


def transfer(
    data: bytes,
    params: TransportParams,
    link_ab: LinkModel,
    link_ba: LinkModel,
    seed: int,
    *,
    server_params: TransportParams | None = None,
    max_time: float = DEFAULT_MAX_TIME,
    max_events: int | None = None,
) -> TransferResult:
    """Send ``data`` from a client connection to a server connection across two links.

    The client application queues ``data`` as the send buffer allows, then ends its stream; the
    server application collects what arrives and ends its own stream when the client's ends.
    ``seed`` seeds both connections' initial sequence numbers (the links bring their own rngs).
    """
    rng = random.Random(seed)
    start = 0.0
    client = Connection(params, role=Role.CLIENT, rng=random.Random(rng.getrandbits(64)), now=start)
    server = Connection(
        server_params or params, role=Role.SERVER, rng=random.Random(rng.getrandbits(64)), now=start
    )
    view = memoryview(data)
    received: list[bytes] = []
    state = {"fed": 0, "eof": 0, "closed": 0}
    failures: list[str] = []
    end_of_data: list[float] = []

    def client_app(now: float) -> None:
        fed = state["fed"]
        if fed < len(data) and (room := client.send_buffer_free) > 0:
            step = min(room, len(data) - fed)
            client.send(view[fed : fed + step])
            fed = state["fed"] = fed + step
        if fed == len(data) and not state["eof"]:
            state["eof"] = 1
            client.send_eof()
        while (event := client.next_event()) is not None:
            _common(event)

    def server_app(now: float) -> None:
        while (event := server.next_event()) is not None:
            if type(event) is DataReceived:
                received.append(event.data)
            elif type(event) is EndOfData:
                end_of_data.append(now)
                server.send_eof()
            else:
                _common(event)

    def _common(event: object) -> None:
        if isinstance(event, Closed):
            state["closed"] += 1
        elif isinstance(event, ConnectionFailed):
            failures.append(event.reason)

    sim = Simulator(client, server, link_ab, link_ba, app_a=client_app, app_b=server_app, start=start)
    if max_events is None:
        # Generous: every segment may be sent many times, each with an ACK and a timer.
        max_events = 1_000_000 + 200 * (len(data) // params.mss + 1)
    outcome = sim.run(lambda: client.closed and server.closed, max_time=max_time, max_events=max_events)
    if not outcome.completed:
        failures.append(outcome.reason)
    return TransferResult(
        delivered=b"".join(received),
        duration=(end_of_data[0] if end_of_data else outcome.now) - start,
        finished_at=outcome.now - start,
        client=client.stats,
        server=server.stats,
        clean=outcome.completed and state["closed"] == 2 and not failures,
        failures=tuple(failures),
    )
