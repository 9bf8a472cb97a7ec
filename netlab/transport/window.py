"""Send and receive windows over a k-bit sequence space, and their legal sizes.

Strategy: windows count in unbounded "absolute" sequence numbers (plain Python ints) and wrap only
where a number meets the wire (``SeqSpace.wrap``/``unwrap``).  That keeps every comparison a plain
integer comparison, with no modular corner cases, however many times the k-bit space wraps.

Nothing here knows the segment format: a ``SendWindow`` holds opaque items (the transport engine
stores encoded segments; TFTP's windowed transfer of RFC 7440 can store DATA packets), with the
first-send time and a retransmitted flag per item, which is all the RTO estimator needs to apply
Karn's rule.  The legal window size depends only on how the receiver acknowledges:

* ``WindowRule.CUMULATIVE`` (Go-Back-N, stop-and-wait, RFC 7440): the receiver accepts exactly the
  next number, so a window may use every number but one: N <= 2**k - 1.  With N = 2**k the
  receiver could not tell a whole new window from a retransmission of the old one.
* ``WindowRule.SELECTIVE`` (Selective Repeat): the receiver's own window of N numbers and the N
  numbers before it (which it must re-acknowledge) must not overlap: N <= 2**(k-1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Generic, TypeVar

from netlab.transport.seq import SeqSpace

__all__ = ["InFlight", "ReceiveWindow", "SendWindow", "WindowRule", "check_window_size"]

T = TypeVar("T")


class WindowRule(enum.Enum):
    """How the receiver acknowledges, which fixes the largest legal window."""

    CUMULATIVE = "Go-Back-N"
    SELECTIVE = "Selective Repeat"

    def limit(self, space: SeqSpace) -> int:
        """The largest legal window in ``space``."""
        if self is WindowRule.CUMULATIVE:
            return space.size - 1
        return space.size // 2


def check_window_size(size: int, space: SeqSpace, rule: WindowRule) -> None:
    """Refuse a window that the sequence space cannot support.

    Raises:
        ValueError: ``size`` is below 1 or above ``rule.limit(space)``.
    """
    limit = rule.limit(space)
    if not 1 <= size <= limit:
        bound = "2**k - 1" if rule is WindowRule.CUMULATIVE else "2**(k-1)"
        raise ValueError(
            f"{rule.value} with {space.bits}-bit sequence numbers allows a window of 1..{limit} "
            f"(N <= {bound}), got {size}"
        )


class InFlight(Generic[T]):
    """One sent, not yet acknowledged item and what Karn's rule needs to know about it."""

    __slots__ = ("acked", "item", "retransmitted", "sent_at")

    def __init__(self, item: T, sent_at: float) -> None:
        self.item = item
        self.sent_at = sent_at  # seconds; time of the latest transmission
        self.retransmitted = False  # Karn: never take an RTT sample from this item
        self.acked = False  # acknowledged individually, waiting for the ones before it


class SendWindow(Generic[T]):
    """The sender's window: numbers ``[base, next)`` are in flight, ``size`` of them unacknowledged.

    The window N (``size``) bounds the numbers *outstanding*: sent and acknowledged neither
    cumulatively nor one by one.  With cumulative acknowledgements that is every number in
    ``[base, next)``.  With selective ones, numbers acknowledged beyond a hole no longer count, so
    a Selective Repeat sender keeps N segments in the network while it repairs the hole, as the
    textbook efficiency U = N (1 - p) / (1 + 2a) assumes, instead of stalling with its window
    pinned at the lost segment.  ``span`` bounds how far ``next`` runs ahead of ``base``: the
    receiver must be able to place every number it may see, so the span is never more than
    ``rule`` allows in ``space`` (and the engine also keeps to the window the receiver advertises).

    Args:
        space: the sequence-number space.
        size: the window N, checked against ``rule``.
        rule: how the receiver acknowledges (``WindowRule``).
        base: the absolute number of the first item to send.
        span: the largest ``next - base``; by default ``size`` (the classic window of N
            consecutive numbers), at least ``size`` and at most ``rule.limit(space)``.

    Raises:
        ValueError: ``size`` or ``span`` is illegal for ``rule`` in ``space``.
    """

    def __init__(
        self, space: SeqSpace, size: int, rule: WindowRule, *, base: int = 0, span: int | None = None
    ) -> None:
        check_window_size(size, space, rule)
        if span is not None:
            check_window_size(span, space, rule)
            if span < size:
                raise ValueError(f"a send window's span ({span}) cannot be below its size ({size})")
        self.space = space
        self.size = size
        self.span = size if span is None else span
        self.rule = rule
        self.base = base  # oldest unacknowledged number
        self.next = base  # next number to assign
        self.selectively_acked = 0  # numbers above ``base`` acknowledged one by one (SR)
        self._entries: dict[int, InFlight[T]] = {}

    @property
    def in_flight(self) -> int:
        """How many numbers are assigned and not yet cumulatively acknowledged."""
        return self.next - self.base

    @property
    def outstanding(self) -> int:
        """How many numbers are sent and not yet acknowledged in any way."""
        return self.next - self.base - self.selectively_acked

    @property
    def full(self) -> bool:
        """No number may be sent now: N are outstanding, or ``next`` is at the end of the span."""
        spread = self.next - self.base
        return spread - self.selectively_acked >= self.size or spread >= self.span

    def push(self, item: T, now: float) -> int:
        """Send ``item`` under the next number; returns that absolute number.

        Raises:
            OverflowError: the window is full (a caller bug: check ``full`` first).
        """
        if self.full:
            raise OverflowError("send window is full")
        seq = self.next
        self._entries[seq] = InFlight(item, now)
        self.next = seq + 1
        return seq

    def get(self, seq: int) -> InFlight[T] | None:
        """The entry for absolute ``seq`` if it is still in flight."""
        return self._entries.get(seq)

    def pending(self) -> Iterator[int]:
        """The numbers in flight and not individually acknowledged, oldest first."""
        entries = self._entries
        return (seq for seq in range(self.base, self.next) if not entries[seq].acked)

    def newest_pending(self) -> int | None:
        """The highest number in flight and not individually acknowledged, or ``None``."""
        entries = self._entries
        for seq in range(self.next - 1, self.base - 1, -1):
            if not entries[seq].acked:
                return seq
        return None

    def mark_retransmitted(self, seq: int, now: float) -> InFlight[T]:
        """Record a retransmission of ``seq`` (Karn: its RTT can no longer be measured)."""
        entry = self._entries[seq]
        entry.retransmitted = True
        entry.sent_at = now
        return entry

    def unwrap_ack(self, wire: int) -> int | None:
        """The absolute number in ``[base, next]`` that the wire value ``wire`` names, if any."""
        seq = self.space.unwrap(wire, self.base)
        return seq if seq <= self.next else None

    def ack_through(self, end: int) -> list[InFlight[T]]:
        """Cumulative acknowledgement of every number below ``end``; returns the newly acked items."""
        acked = []
        entries = self._entries
        for seq in range(self.base, min(end, self.next)):
            entry = entries.pop(seq)
            if entry.acked:
                self.selectively_acked -= 1
            else:
                acked.append(entry)
        self.base = max(self.base, min(end, self.next))
        return acked

    def ack_one(self, seq: int) -> InFlight[T] | None:
        """Selective acknowledgement of ``seq``; slides the base over any acked prefix.

        Returns the entry if this acknowledged it for the first time, else ``None``.
        """
        entry = self._entries.get(seq)
        if entry is None or entry.acked:
            return None
        entry.acked = True
        self.selectively_acked += 1
        entries = self._entries
        while self.base < self.next and entries[self.base].acked:
            del entries[self.base]
            self.base += 1
            self.selectively_acked -= 1
        return entry


class ReceiveWindow(Generic[T]):
    """The receiver's window: ``base`` is the next number to deliver; out-of-order items wait.

    A cumulative receiver (GBN) only ever moves ``base``; a selective one (SR) buffers items
    in ``[base, base + size)`` and releases them in order.
    """

    def __init__(self, space: SeqSpace, size: int, *, base: int = 0) -> None:
        self.space = space
        self.size = size
        self.base = base
        self._buffered: dict[int, T] = {}

    @property
    def buffered(self) -> int:
        """How many out-of-order items are waiting for a gap to fill."""
        return len(self._buffered)

    def unwrap(self, wire: int) -> int:
        """The absolute number for ``wire``, looking back one window and forward the rest."""
        return self.space.unwrap(wire, self.base - self.size)

    def accept(self, seq: int, item: T) -> list[T]:
        """Take ``item`` at absolute ``seq`` (caller checked the range); returns the items now in order."""
        if seq != self.base:
            self._buffered.setdefault(seq, item)
            return []
        ready = [item]
        self.base += 1
        buffered = self._buffered
        while buffered:
            nxt = buffered.pop(self.base, None)
            if nxt is None:
                break
            ready.append(nxt)
            self.base += 1
        return ready
