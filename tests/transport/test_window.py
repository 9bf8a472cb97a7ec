"""Sequence spaces, windows and their legal sizes, the deadline heap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from netlab.transport.deadlines import DeadlineHeap
from netlab.transport.engine import TransportParams
from netlab.transport.seq import SeqSpace
from netlab.transport.window import ReceiveWindow, SendWindow, WindowRule, check_window_size

GBN, SR = WindowRule.CUMULATIVE, WindowRule.SELECTIVE


@pytest.mark.parametrize(
    ("protocol", "bits", "window", "message"),
    [
        (
            "gbn",
            3,
            8,
            r"Go-Back-N with 3-bit sequence numbers allows a window of 1\.\.7 \(N <= 2\*\*k - 1\), got 8",
        ),
        ("gbn", 16, 2**16, r"allows a window of 1\.\.65535"),
        (
            "sr",
            3,
            5,
            r"Selective Repeat with 3-bit sequence numbers allows a window of 1\.\.4 \(N <= 2\*\*\(k-1\)\)",
        ),
        ("sr", 16, 2**15 + 1, r"1\.\.32768"),
        ("sr", 16, 0, r"got 0"),
        ("gbn", 2, 1, r"seq_bits \(k\) must be 3\.\.32, got 2"),
        ("sr", 33, 4, r"seq_bits \(k\) must be 3\.\.32, got 33"),
    ],
)
def test_illegal_windows_are_refused_with_a_clear_message(
    protocol: str, bits: int, window: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TransportParams(protocol=protocol, seq_bits=bits, window=window)


@pytest.mark.parametrize(("protocol", "bits", "window"), [("gbn", 3, 7), ("sr", 3, 4), ("sr", 32, 2**31)])
def test_the_largest_legal_windows_are_accepted(protocol: str, bits: int, window: int) -> None:
    assert TransportParams(protocol=protocol, seq_bits=bits, window=window).effective_window == window


def test_stop_and_wait_is_a_window_of_one_whatever_is_asked() -> None:
    assert TransportParams(protocol="saw", window=500, seq_bits=3).effective_window == 1


@pytest.mark.parametrize("bits", [2, 33])
def test_seq_space_width(bits: int) -> None:
    with pytest.raises(ValueError, match=r"3\.\.32"):
        SeqSpace(bits)
    with pytest.raises(ValueError, match="sequence-number bits"):
        check_window_size(1, SeqSpace(bits), GBN)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "tcp"}, "protocol must be one of"),
        ({"mss": 0}, "mss must be"),
        ({"mss": 70000}, "mss must be"),
        ({"max_retries": -1}, "max_retries"),
        ({"min_rto": 2.0}, "min_rto <= initial_rto"),
        ({"linger": -1.0}, "linger"),
        ({"send_buffer": 0}, "send_buffer"),
        ({"receive_buffer": 10}, "receive_buffer"),
    ],
)
def test_other_illegal_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransportParams(**kwargs)  # type: ignore[arg-type]


@given(st.integers(3, 32), st.integers(0, 2**40), st.integers(0, 2**32 - 1))
def test_unwrap_inverts_wrap_within_one_space(bits: int, low: int, offset: int) -> None:
    space = SeqSpace(bits)
    absolute = low + offset % space.size
    assert space.unwrap(space.wrap(absolute), low) == absolute


def test_send_window_wraps_and_acks() -> None:
    window: SendWindow[str] = SendWindow(SeqSpace(3), 7, GBN, base=5)
    seqs = [window.push(f"item{i}", now=float(i)) for i in range(7)]
    assert seqs == list(range(5, 12))
    assert window.full
    with pytest.raises(OverflowError):
        window.push("one too many", now=7.0)
    # Wire numbers wrap at 8; the window still knows which absolute number an ACK names.
    assert window.unwrap_ack(window.space.wrap(9)) == 9
    assert window.unwrap_ack(window.space.wrap(12)) == 12  # everything acknowledged
    acked = window.ack_through(9)
    assert [e.item for e in acked] == ["item0", "item1", "item2", "item3"]
    assert (window.base, window.in_flight) == (9, 3)
    assert window.unwrap_ack(window.space.wrap(8)) is None  # behind the base: old


def test_selective_acks_slide_the_base_over_a_contiguous_prefix() -> None:
    window: SendWindow[int] = SendWindow(SeqSpace(4), 8, SR)
    for i in range(5):
        window.push(i, now=0.0)
    assert window.ack_one(2) is not None
    assert window.ack_one(2) is None  # already acknowledged
    assert window.base == 0
    assert list(window.pending()) == [0, 1, 3, 4]
    window.ack_one(0)
    assert window.base == 1
    window.ack_one(1)
    assert window.base == 3  # slid over the already-acked 2
    # A cumulative ACK returns only what was not acknowledged before.
    window.ack_one(4)
    assert [e.item for e in window.ack_through(5)] == [3]


def test_retransmission_is_remembered_for_karn() -> None:
    window: SendWindow[str] = SendWindow(SeqSpace(8), 4, SR)
    seq = window.push("x", now=1.0)
    entry = window.mark_retransmitted(seq, now=2.5)
    assert (entry.retransmitted, entry.sent_at) == (True, 2.5)


def test_receive_window_buffers_and_releases_in_order() -> None:
    window: ReceiveWindow[str] = ReceiveWindow(SeqSpace(3), 4, base=6)
    assert window.accept(8, "c") == []
    assert window.accept(7, "b") == []
    assert window.buffered == 2
    assert window.accept(6, "a") == ["a", "b", "c"]
    assert window.base == 9
    # Numbers are read back from 3 bits relative to the window: 9 -> wire 1.
    assert window.unwrap(1) == 9
    assert window.unwrap(5) == 5  # one window behind: an old segment


def test_deadline_heap_lazy_deletion() -> None:
    timers: DeadlineHeap[int] = DeadlineHeap()
    assert timers.earliest() is None
    timers.schedule(1, 5.0)
    timers.schedule(2, 3.0)
    timers.schedule(3, 4.0)
    timers.schedule(2, 6.0)  # moved later: the 3.0 entry goes stale
    timers.cancel(3)
    assert timers.earliest() == 5.0
    assert timers.pop_expired(5.5) == [1]
    assert len(timers) == 1
    assert 2 in timers
    assert timers.pop_expired(10.0) == [2]
    assert timers.earliest() is None


def test_deadline_heap_stays_small_when_rescheduled_forever() -> None:
    timers: DeadlineHeap[int] = DeadlineHeap()
    for i in range(10_000):
        timers.schedule(i % 3, float(i))
    assert len(timers) == 3
    assert len(timers._heap) <= 2 * 3 + 64 + 1
    # The live deadlines are the last ones set: 9997 (key 1), 9998 (key 2), 9999 (key 0).
    assert timers.pop_expired(1e9) == [1, 2, 0]


class SendWindowMachine(RuleBasedStateMachine):
    """In flight never exceeds N; acknowledgements never move the base backwards."""

    def __init__(self) -> None:
        super().__init__()
        self.window: SendWindow[int] = SendWindow(SeqSpace(3), 4, SR)
        self.last_base = 0
        self.now = 0.0

    @precondition(lambda self: not self.window.full)
    @rule()
    def push(self) -> None:
        self.now += 1
        self.window.push(self.window.next, self.now)

    @rule(offset=st.integers(0, 8))
    def cumulative_ack(self, offset: int) -> None:
        # Any wire value may arrive; only those naming [base, next] may move the window.
        seq = self.window.unwrap_ack(self.window.space.wrap(self.window.base + offset))
        if seq is not None:
            self.window.ack_through(seq)

    @rule(offset=st.integers(0, 7))
    def selective_ack(self, offset: int) -> None:
        seq = self.window.base + offset
        if seq < self.window.next:
            self.window.ack_one(seq)

    @invariant()
    def in_flight_within_window(self) -> None:
        assert 0 <= self.window.in_flight <= self.window.size

    @invariant()
    def base_never_moves_back(self) -> None:
        assert self.window.base >= self.last_base
        self.last_base = self.window.base


TestSendWindowMachine = SendWindowMachine.TestCase
TestSendWindowMachine.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)


def test_selective_window_counts_outstanding_numbers_within_its_span() -> None:
    window: SendWindow[int] = SendWindow(SeqSpace(4), 3, SR, span=6)
    for i in range(3):
        window.push(i, now=0.0)
    assert window.full
    window.ack_one(1)
    window.ack_one(2)  # 0 is still missing: two numbers acknowledged past the hole
    assert (window.base, window.outstanding, window.full) == (0, 1, False)
    window.push(3, now=0.0)
    window.push(4, now=0.0)
    assert window.full  # three outstanding again: 0, 3 and 4
    window.ack_one(3)
    window.ack_one(4)
    window.push(5, now=0.0)
    assert (window.outstanding, window.in_flight, window.full) == (2, 6, True)  # the span is the limit
    with pytest.raises(OverflowError):
        window.push(6, now=0.0)


def test_a_span_is_checked_against_the_sequence_space() -> None:
    with pytest.raises(ValueError, match=r"2\*\*\(k-1\)"):
        SendWindow(SeqSpace(4), 3, SR, span=9)
    with pytest.raises(ValueError, match="below its size"):
        SendWindow(SeqSpace(4), 3, SR, span=2)
    assert SendWindow(SeqSpace(4), 3, GBN).span == 3  # by default the classic N consecutive numbers
