"""Modular sequence-number arithmetic in a k-bit space.

Sequence numbers live in ``[0, 2**k)`` and wrap.  Comparing two of them only makes sense when
they are known to be within half the space of each other (RFC 1982 "serial number arithmetic"
uses the same rule); the windows of GBN and SR are sized so that this always holds.  Distances
are the way to reason about wrapped numbers: ``distance(a, b)`` is how many steps forward it
takes to go from ``a`` to ``b``.

Inside a machine it is simpler still to count segments with unbounded Python integers ("absolute"
numbers) and wrap only at the wire: ``wrap(n)`` turns an absolute number into the k-bit value that
is sent, and ``unwrap(wire, low)`` turns a received k-bit value back into the one absolute number in
``[low, low + 2**k)`` that it can stand for.  The caller picks ``low`` from its window, which is
exactly the knowledge that makes the wrapped number unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_SEQ_BITS", "MIN_SEQ_BITS", "SeqSpace"]

MIN_SEQ_BITS = 3
MAX_SEQ_BITS = 32


@dataclass(frozen=True)
class SeqSpace:
    """The sequence-number space of ``bits`` bits (3 <= bits <= 32)."""

    bits: int

    def __post_init__(self) -> None:
        if not MIN_SEQ_BITS <= self.bits <= MAX_SEQ_BITS:
            raise ValueError(f"sequence-number bits must be {MIN_SEQ_BITS}..{MAX_SEQ_BITS}, got {self.bits}")

    @property
    def size(self) -> int:
        """How many distinct sequence numbers there are (2**bits)."""
        return 1 << self.bits

    def add(self, seq: int, n: int) -> int:
        """``seq + n`` wrapped into the space (``n`` may be negative)."""
        return (seq + n) & (self.size - 1)

    def distance(self, a: int, b: int) -> int:
        """Steps forward from ``a`` to ``b``, in ``[0, size)``."""
        return (b - a) & (self.size - 1)

    def in_window(self, seq: int, base: int, length: int) -> bool:
        """True if ``seq`` is one of the ``length`` numbers starting at ``base``."""
        return self.distance(base, seq) < length

    def lt(self, a: int, b: int) -> bool:
        """Serial-number ``a < b`` (RFC 1982 section 3.2): ``b`` is less than half a space ahead."""
        d = self.distance(a, b)
        return 0 < d < self.size // 2

    def valid(self, seq: int) -> bool:
        """True if ``seq`` fits in ``bits`` bits."""
        return 0 <= seq < self.size

    def wrap(self, absolute: int) -> int:
        """The k-bit value sent on the wire for the absolute number ``absolute``."""
        return absolute & (self.size - 1)

    def unwrap(self, seq: int, low: int) -> int:
        """The absolute number in ``[low, low + size)`` whose wire value is ``seq``."""
        return low + ((seq - low) & (self.size - 1))
