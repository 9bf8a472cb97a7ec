"""A client and a server connection wired back to back by hand, in virtual time.

Tests decide, datagram by datagram, what the "network" delivers; nothing is sent unless a test
calls ``flush``.  Sequence numbers are reported relative to each side's first data number, so
tests read as "segments 0, 1, 2" whatever the random initial sequence numbers are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from netlab.transport.engine import Connection, Role, TransportParams
from netlab.transport.events import Event
from netlab.transport.segment import Segment, SegmentType, decode_segment_untrusted

MSS = 100  # bytes; small, so that a few hundred bytes make several segments

Drop = Callable[[Segment], bool]


def _keep(_: Segment) -> bool:
    return False


def decode(datagram: bytes) -> Segment:
    segment = decode_segment_untrusted(datagram)
    assert segment is not None
    return segment


class Pair:
    def __init__(
        self,
        protocol: str = "gbn",
        *,
        client_seed: int = 1,
        server_seed: int = 2,
        server_params: TransportParams | None = None,
        **params: Any,
    ) -> None:
        params.setdefault("mss", MSS)
        params.setdefault("window", 4)
        self.params = TransportParams(protocol=protocol, **params)
        self.client = Connection(self.params, role=Role.CLIENT, rng=random.Random(client_seed), now=0.0)
        self.server = Connection(
            server_params or self.params, role=Role.SERVER, rng=random.Random(server_seed), now=0.0
        )
        self.now = 0.0
        self.events: dict[int, list[Event]] = {id(self.client): [], id(self.server): []}
        self.isn: dict[int, int] = {}
        self.bits = self.params.seq_bits

    def peer(self, conn: Connection) -> Connection:
        return self.server if conn is self.client else self.client

    def flush(self, conn: Connection, *, drop: Drop = _keep) -> list[Segment]:
        """Send what ``conn`` has to send now; deliver to the peer all but the dropped ones."""
        sent = []
        for datagram in conn.datagrams_to_send(self.now):
            segment = decode(datagram)
            if segment.type in (SegmentType.SYN, SegmentType.SYN_ACK):
                self.isn[id(conn)] = segment.seq
            sent.append(segment)
            if not drop(segment):
                self.peer(conn).receive_datagram(datagram, self.now)
        return sent

    def drain(self, conn: Connection) -> list[Event]:
        events = []
        while (event := conn.next_event()) is not None:
            events.append(event)
        self.events[id(conn)] += events
        return events

    def handshake(self) -> None:
        self.flush(self.client)
        self.flush(self.server)
        self.flush(self.client)
        self.drain(self.client)
        self.drain(self.server)

    def fire(self, conn: Connection) -> float:
        """Advance virtual time to ``conn``'s timer and run it."""
        deadline = conn.get_timer()
        assert deadline is not None
        self.now = max(self.now, deadline)
        conn.handle_timer(self.now)
        return self.now

    def rel(self, conn: Connection, segment: Segment) -> int:
        """``segment``'s number relative to ``conn``'s first data number."""
        return (segment.seq - self.isn[id(conn)] - 1) % (1 << self.bits)

    def data_seqs(self, conn: Connection, segments: list[Segment]) -> list[int]:
        return [self.rel(conn, s) for s in segments if s.type is SegmentType.DATA]

    def exchange(self, *, rounds: int = 1000, drain: bool = True) -> None:
        """Flush both sides until neither has anything to send (timers are not run)."""
        for _ in range(rounds):
            moved = bool(self.flush(self.client)) | bool(self.flush(self.server))
            if drain:
                self.drain(self.client)
                self.drain(self.server)
            if not moved:
                return
        raise AssertionError("the pair never went quiet")
