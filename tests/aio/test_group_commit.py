"""GroupCommit: items that wait while a batch is committed go together in the next one."""

from __future__ import annotations

from collections.abc import Callable

import outcome
import pytest
import trio
import trio.testing

from netlab.aio.group_commit import GroupCommit


class FakeStore:
    """A commit function that records its batches, and a ``run`` that can hold them back."""

    def __init__(self, *, seconds_per_item: float = 0.0, failing: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.committed: list[str] = []
        self.seconds_per_item = seconds_per_item
        self.failing = failing
        self.gate: trio.Event | None = None  # while set to an unset event, calls wait for it
        self.in_flight = 0
        self.most_in_flight = 0

    def commit(self, items: list[str]) -> list[outcome.Outcome[str]]:
        self.batches.append(list(items))
        results: list[outcome.Outcome[str]] = []
        for item in items:
            if item in self.failing:
                results.append(outcome.Error(OSError(f"cannot store {item}")))
            else:
                self.committed.append(item)
                results.append(outcome.Value(item.upper()))
        return results

    async def run(
        self, fn: Callable[[list[str]], list[outcome.Outcome[str]]], items: list[str]
    ) -> list[outcome.Outcome[str]]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()  # like a thread call that has not started yet
            await trio.sleep(self.seconds_per_item * len(items))  # the thread's time
            return fn(items)
        finally:
            self.in_flight -= 1


async def start(
    nursery: trio.Nursery, group: GroupCommit[str, str], items: list[str], results: dict[str, object]
) -> None:
    """Submit ``items`` from tasks of their own, in order, each once the previous one waits."""

    async def one(item: str) -> None:
        try:
            results[item] = await group.submit(item)
        except OSError as exc:
            results[item] = exc

    for item in items:
        nursery.start_soon(one, item)
        await trio.testing.wait_all_tasks_blocked()


async def test_items_waiting_on_a_batch_go_together_in_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.gate = trio.Event()
    group = GroupCommit(store.commit, store.run)
    results: dict[str, object] = {}
    with trio.fail_after(60):  # virtual seconds: a lost wake-up fails fast
        async with trio.open_nursery() as nursery:
            await start(nursery, group, ["a", "b", "c", "d"], results)
            assert store.batches == [] and store.in_flight == 1  # "a" leads, the rest wait
            store.gate.set()
    assert store.batches == [["a"], ["b", "c", "d"]]
    assert results == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert group.batches == 2


async def test_a_failed_item_fails_only_its_submitter(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore(failing=frozenset({"b"}))
    store.gate = trio.Event()
    group = GroupCommit(store.commit, store.run)
    results: dict[str, object] = {}
    with trio.fail_after(60):  # virtual seconds: a lost wake-up fails fast
        async with trio.open_nursery() as nursery:
            await start(nursery, group, ["a", "b", "c"], results)
            store.gate.set()
    assert isinstance(results.pop("b"), OSError)
    assert results == {"a": "A", "c": "C"}


async def test_a_cancelled_follower_is_not_committed(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore()
    store.gate = trio.Event()
    group = GroupCommit(store.commit, store.run)
    results: dict[str, object] = {}
    with trio.fail_after(60):  # virtual seconds: a lost wake-up fails fast
        async with trio.open_nursery() as nursery:
            await start(nursery, group, ["a", "b"], results)
            with trio.move_on_after(1):  # "x" gives up while waiting behind "a"
                await group.submit("x")
            store.gate.set()
    assert store.committed == ["a", "b"]


async def test_a_leader_cancelled_before_its_call_hands_its_batch_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    group = GroupCommit(store.commit, store.run)
    first, second = trio.Event(), trio.Event()
    store.gate = first
    results: dict[str, object] = {}
    scope = trio.CancelScope()

    async def b() -> None:
        with scope:
            results["b"] = await group.submit("b")

    with trio.fail_after(60):  # virtual seconds: a lost wake-up fails fast
        async with trio.open_nursery() as nursery:
            await start(nursery, group, ["a"], results)  # "a" leads; its call is held
            nursery.start_soon(b)
            await trio.testing.wait_all_tasks_blocked()
            await start(nursery, group, ["c", "d"], results)
            store.gate = second
            first.set()  # "a" is done: "b", the oldest waiting, leads "b", "c", "d"
            await trio.testing.wait_all_tasks_blocked()
            assert store.in_flight == 1 and store.batches == [["a"]]
            scope.cancel()  # "b" is cancelled before its call starts: "c" leads the rest
            await trio.testing.wait_all_tasks_blocked()
            second.set()
    assert store.batches == [["a"], ["c", "d"]]
    assert results == {"a": "A", "c": "C", "d": "D"}


@pytest.mark.parametrize(("seconds_per_item", "parallel"), [(0.0001, False), (0.005, True)])
async def test_slow_batches_are_committed_side_by_side(
    autojump_clock: trio.testing.MockClock, seconds_per_item: float, parallel: bool
) -> None:
    """40 items wait while the first is committed; that batch tells how long an item takes.

    At 0.1 ms an item the 39 others are one batch's work; at 5 ms they are several batches'
    work, which run side by side (at most ``max_parallel``).
    """
    store = FakeStore(seconds_per_item=seconds_per_item)
    store.gate = trio.Event()
    group = GroupCommit(store.commit, store.run, max_parallel=8)
    results: dict[str, object] = {}
    with trio.fail_after(60):  # virtual seconds: a lost wake-up fails fast
        async with trio.open_nursery() as nursery:
            await start(nursery, group, [f"item-{i}" for i in range(40)], results)
            assert store.in_flight == 1
            store.gate.set()
    assert results == {f"item-{i}": f"ITEM-{i}" for i in range(40)}
    if parallel:
        assert 3 <= store.most_in_flight <= 8
    else:
        assert store.most_in_flight == 1
        assert store.batches == [["item-0"], [f"item-{i}" for i in range(1, 40)]]
