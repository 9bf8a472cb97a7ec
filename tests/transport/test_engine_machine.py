"""Window invariants under an adversarial network, as a hypothesis rule-based state machine.

The network is a bag of datagrams that the rules deliver, drop, duplicate and reorder at will,
while time jumps from timer to timer.  Whatever happens: the sender never has more than N
segments in flight nor any number past the receiver's advertised window (zero-window probes
carry no data), the receiver never holds more unread bytes than its buffer, acknowledgements
never move backwards, and the receiver hands out a prefix of what was sent.
The bag can hold a datagram forever, so k is wide enough (16 bits) that no run wraps into an old
number; bounded reordering with k = 3 is tested over the simulator.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from netlab.transport.engine import Connection, Role, TransportParams
from netlab.transport.events import DataReceived
from netlab.transport.states import ConnState


class EngineMachine(RuleBasedStateMachine):
    protocol = "sr"

    def __init__(self) -> None:
        super().__init__()
        params = TransportParams(
            protocol=self.protocol, window=4, seq_bits=16, mss=10, receive_buffer=60, max_retries=1000
        )
        self.client = Connection(params, role=Role.CLIENT, rng=random.Random(1), now=0.0)
        self.server = Connection(params, role=Role.SERVER, rng=random.Random(2), now=0.0)
        self.now = 0.0
        self.network: list[tuple[Connection, bytes]] = []
        self.sent = bytearray()
        self.received = bytearray()
        self.base = self.client._snd.base
        self.edge = 0

    def _collect(self) -> None:
        for source, target in ((self.client, self.server), (self.server, self.client)):
            self.network += [(target, d) for d in source.datagrams_to_send(self.now)]

    @rule(size=st.integers(1, 40))
    def app_sends(self, size: int) -> None:
        self.client.send(bytes((len(self.sent) + i) % 251 for i in range(size)))
        self.sent += bytes((len(self.sent) + i) % 251 for i in range(size))
        self._collect()

    @rule()
    def app_reads(self) -> None:
        while (event := self.server.next_event()) is not None:
            if isinstance(event, DataReceived):
                self.received += event.data
        self._collect()

    @precondition(lambda self: self.network)
    @rule(index=st.integers(0, 1000))
    def deliver(self, index: int) -> None:
        target, datagram = self.network.pop(index % len(self.network))  # any order: reordering
        target.receive_datagram(datagram, self.now)
        self._collect()

    @precondition(lambda self: self.network)
    @rule(index=st.integers(0, 1000))
    def drop(self, index: int) -> None:
        self.network.pop(index % len(self.network))

    @precondition(lambda self: self.network)
    @rule(index=st.integers(0, 1000))
    def duplicate(self, index: int) -> None:
        self.network.append(self.network[index % len(self.network)])

    @rule()
    def time_passes(self) -> None:
        timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
        if timers:
            self.now = max(self.now, min(timers))
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
        self._collect()

    @invariant()
    def in_flight_within_n_and_the_advertised_window(self) -> None:
        snd = self.client._snd
        assert 0 <= snd.outstanding <= snd.size
        assert 0 <= snd.in_flight <= snd.span
        if self.server.state is not ConnState.LISTEN:
            # Every number sent lies where the receiver can place it: within its window.
            assert snd.next - self.server._rcv.base <= self.server._rcv.size
        self.edge = max(self.edge, self.client._peer_ack + self.client._peer_window)
        assert snd.next <= self.edge

    @invariant()
    def receiver_never_holds_more_than_its_buffer(self) -> None:
        assert self.server._rx_pending <= self.server._params.receive_buffer

    @invariant()
    def acknowledgements_never_move_backwards(self) -> None:
        assert self.client._snd.base >= self.base
        self.base = self.client._snd.base

    @invariant()
    def receiver_hands_out_a_prefix_of_what_was_sent(self) -> None:
        assert self.sent.startswith(self.received)


class GbnEngineMachine(EngineMachine):
    protocol = "gbn"


_SETTINGS = settings(max_examples=60, stateful_step_count=80, deadline=None)
TestSrEngineMachine = EngineMachine.TestCase
TestSrEngineMachine.settings = _SETTINGS
TestGbnEngineMachine = GbnEngineMachine.TestCase
TestGbnEngineMachine.settings = _SETTINGS
