"""The state of one question being resolved, and of one query sent upstream.

Strategy: a :class:`Task` is one question the resolver is working out: a client's, or one it
asked itself (the address of a name server without glue, the root's NS RRset when priming).
Tasks are plain records; :mod:`netlab.proto.dns_resolve` moves them through the states of
:data:`TRANSITIONS`, the one table of legal moves.  A task is always in exactly one of:

* SEARCHING: it has work to do now (look in the cache, pick a zone cut, pick a server);
* QUERYING: one :class:`Exchange` is out, waiting for an answer or its timeout;
* WAITING: it waits for another task (priming, or a name server's address) to finish;
* DONE: its outcome is known and has been handed out.

Identical questions share one task (coalescing), so a task keeps a list of client tickets and of
the tasks that depend on it.  All tasks spawned for one client question draw on one
:class:`Budget` of upstream queries and share that question's deadline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from netlab.proto.dns_cache import TimedRRset
from netlab.proto.dns_rrset import Name
from netlab.proto.dns_wire import LocalProtocolError, Transport

__all__ = [
    "TRANSITIONS",
    "Budget",
    "Cut",
    "Exchange",
    "Task",
    "TaskState",
    "minimised_labels",
]

Addr = tuple[str, int]

# RFC 9156 section 2.3: bound the number of minimised queries per zone cut.  The first
# MINIMISE_ONE_LAB queries each add one label; after that, labels are added in larger steps so that
# no more than MAX_MINIMISE_COUNT queries are spent on one long name.
MAX_MINIMISE_COUNT = 10
MINIMISE_ONE_LAB = 4


class TaskState(enum.Enum):
    SEARCHING = "searching"
    QUERYING = "querying"
    WAITING = "waiting"
    DONE = "done"


#: The legal moves of a task.  SEARCHING -> SEARCHING is not listed: staying put is not a move.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.SEARCHING: frozenset({TaskState.QUERYING, TaskState.WAITING, TaskState.DONE}),
    # An answer or a timeout ends the exchange; a truncated answer is asked again over TCP.
    TaskState.QUERYING: frozenset({TaskState.SEARCHING, TaskState.QUERYING, TaskState.DONE}),
    TaskState.WAITING: frozenset({TaskState.SEARCHING, TaskState.DONE}),
    TaskState.DONE: frozenset(),
}


@dataclass
class Budget:
    """Upstream queries left for one client question and everything it spawned."""

    left: int


@dataclass(eq=False)
class Cut:
    """A zone cut the task is working at: the zone, its servers' addresses, what was tried."""

    zone: Name
    #: The servers' addresses, each with the name of the server it belongs to.
    addrs: dict[Addr, Name]
    #: Name servers with no known address that may be looked up (not inside the zone itself).
    unresolved: list[Name]
    #: Failed queries (timeouts, SERVFAIL, lameness) per server at this cut, for this task.
    tries: dict[Addr, int] = field(default_factory=dict)
    round: int = 1  # a server may fail ``round`` times before the task gives up on it this round

    @property
    def usable(self) -> bool:
        return bool(self.addrs or self.unresolved)


@dataclass(eq=False)
class Task:
    key: tuple[Name, int]  # the question as first asked: what identical questions coalesce on
    qname: Name  # the name being resolved now (moves along CNAME chains)
    qtype: int
    deadline: float
    budget: Budget
    depth: int  # 0 for a client's question, +1 for each task spawned to serve another
    minimise: bool
    state: TaskState = TaskState.SEARCHING
    cut: Cut | None = None
    asked_labels: int = 0  # QNAME minimisation: labels of qname in the next query
    minimise_steps: int = 0
    chain: list[TimedRRset] = field(default_factory=list)  # CNAMEs followed so far
    seen: set[Name] = field(default_factory=set)  # names visited, to catch CNAME loops
    exchange: Exchange | None = None
    waiting_on: Task | None = None
    tickets: list[int] = field(default_factory=list)
    dependents: list[Task] = field(default_factory=list)
    # The outcome, once DONE:
    rcode: int = 0
    final: TimedRRset | None = None
    soa: TimedRRset | None = None

    def move(self, new: TaskState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"task for {self.key}: {self.state.value} -> {new.value} is not allowed")
        self.state = new

    def enter(self, cut: Cut) -> None:
        """Start working at ``cut``: minimisation restarts one label below the zone."""
        self.cut = cut
        self.asked_labels = len(cut.zone) + 1
        self.minimise_steps = 0

    def question(self, a_type: int) -> tuple[Name, int]:
        """The name and type to send now: minimised (RFC 9156) until the full name is reached.

        RFC 9156 section 3 recommends QTYPE A for the minimised queries, because some servers
        answer NS queries for names that are not zone cuts badly.
        """
        if not self.minimise or self.asked_labels >= len(self.qname):
            return self.qname, self.qtype
        return self.qname[len(self.qname) - self.asked_labels :], a_type

    def deeper(self) -> None:
        """The minimised name was not a zone cut: ask for more of the name next time."""
        self.minimise_steps += 1
        self.asked_labels = minimised_labels(self.asked_labels, len(self.qname), self.minimise_steps)


def minimised_labels(asked: int, total: int, steps: int) -> int:
    """How many labels the next minimised query carries (RFC 9156 section 2.3)."""
    if steps < MINIMISE_ONE_LAB:
        return asked + 1
    remaining_queries = MAX_MINIMISE_COUNT - steps
    if remaining_queries <= 1:
        return total
    remaining_labels = total - asked
    return asked + max(1, -(-remaining_labels // remaining_queries))


@dataclass(eq=False)
class Exchange:
    """One query sent upstream, and what an answer to it must match."""

    handle: int
    task: Task
    server: Addr
    server_name: Name
    zone: Name  # the zone ``server`` was asked as an authority for: the answer's bailiwick
    qname: Name
    qtype: int
    msg_id: int
    transport: Transport
    edns: bool
    sent_at: float
    timeout_at: float
