"""Modular sequence-number arithmetic in a k-bit space.

Sequence numbers live in ``[0, 2**k)`` and wrap.  Comparing two of them only makes sense when
they are known to be within half the space of each other (RFC 1982 "serial number arithmetic"
uses the same rule); the windows of GBN and SR are sized so that this always holds.  Distances
are the way to reason about wrapped numbers: ``distance(a, b)`` is how many steps forward it
takes to go from ``a`` to ``b``.
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
        return 0 <= seq < self.size
