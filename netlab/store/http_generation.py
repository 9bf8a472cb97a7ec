"""Which responses still on their way into the cache an invalidation must stop (RFC 9111 4.4).

Strategy: a response is committed to the store only once its whole body has arrived, so an
unsafe request for the same URI can be answered, and invalidate, in between; the late commit
must then not land.  A request takes a :class:`Generation` when it begins, before the origin is
asked; :class:`Invalidations` counts this process's invalidations and remembers, per key, the
count at the latest, so a commit can tell whether its key was invalidated since its request
began.  Other processes' invalidations are found in the index's journal, from the position the
generation recorded (:meth:`netlab.store.http_index.DiskIndex.commit`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MARKS", "Generation", "Invalidations"]

MARKS = 10_000  # recently invalidated keys remembered for the writers in flight


@dataclass(frozen=True, slots=True)
class Generation:
    """Where the store stood when a request began, for its writer to check at commit.

    ``local`` counts this process's invalidations; ``journal`` is the journal position this
    process had caught up with (shared stores only), past which other processes' invalidations
    are looked for.
    """

    local: int
    journal: int | None


class Invalidations:
    """This process's invalidations: a counter, and its value at each key's latest one."""

    def __init__(self) -> None:
        self._count = 0
        self._marks: dict[str, int] = {}
        # Below this count a generation is too old to tell (the marks were cleared since).
        self._floor = 0

    def generation(self, journal: int | None) -> Generation:
        return Generation(self._count, journal)

    def note(self, keys: list[str]) -> None:
        for key in keys:
            if len(self._marks) >= MARKS:
                # Forget the marks, bounding the memory they take; a writer older than this
                # point is then told its key was invalidated, to be safe.
                self._marks.clear()
                self._floor = self._count
            self._count += 1
            self._marks[key] = self._count

    def since(self, key: str, generation: Generation) -> bool:
        """Whether ``key`` was invalidated after ``generation`` was taken."""
        return generation.local < self._floor or self._marks.get(key, -1) > generation.local
