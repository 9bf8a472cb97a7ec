"""Session waits in virtual time: one reaper for every session's idle limit, and the shutdown."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from netlab.aio.sessions import SessionWaits, WaitEnd, Waiter


async def reader(
    waits: SessionWaits,
    stream: trio.abc.ReceiveStream,
    log: list[tuple[float, object]],
    *,
    interruptible: bool = True,
) -> None:
    """A session that reads until EOF, logging what it got and how it ended, with the time."""

    async def session(waiter: Waiter) -> None:
        while data := await waiter.receive(stream, 100, interruptible=interruptible):
            log.append((trio.current_time(), bytes(data)))

    ended = await waits.run(session)
    log.append((trio.current_time(), ended))


async def test_each_session_times_out_at_its_own_deadline(autojump_clock: trio.testing.MockClock) -> None:
    waits = SessionWaits(60.0)
    log: list[tuple[float, object]] = []
    first, first_end = trio.testing.memory_stream_pair()
    _second, second_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, waits, first_end, log)
        await trio.sleep(10)
        nursery.start_soon(reader, waits, second_end, log)
        await trio.sleep(20)
        await first.send_all(b"hello")  # at 30: the first one's clock starts again
    assert log == [(30.0, b"hello"), (70.0, WaitEnd.IDLE), (90.0, WaitEnd.IDLE)]


async def test_a_session_that_ends_by_itself_reports_nothing(autojump_clock: trio.testing.MockClock) -> None:
    waits = SessionWaits(60.0)
    log: list[tuple[float, object]] = []
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, waits, server, log)
        await trio.sleep(59)
        await client.aclose()
    assert log == [(59.0, None)]
    await trio.sleep(100)  # the reaper has nobody left to cancel


async def test_shutdown_ends_interruptible_waits_at_once_and_later_ones_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waits = SessionWaits(60.0)
    idle_log: list[tuple[float, object]] = []
    busy_log: list[tuple[float, object]] = []
    late_log: list[tuple[float, object]] = []
    _, idle = trio.testing.memory_stream_pair()
    busy_client, busy = trio.testing.memory_stream_pair()
    _, late = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, waits, idle, idle_log)
        nursery.start_soon(partial(reader, waits, busy, busy_log, interruptible=False))
        await trio.sleep(5)
        waits.shut_down()
        await trio.sleep(5)
        await busy_client.send_all(b"rest of the message")  # not interrupted: it still reads
        nursery.start_soon(reader, waits, late, late_log)
    assert idle_log == [(5.0, WaitEnd.SHUTDOWN)]
    assert busy_log == [(10.0, b"rest of the message"), (70.0, WaitEnd.IDLE)]
    assert late_log == [(10.0, WaitEnd.SHUTDOWN)]


@pytest.mark.parametrize("limit", [0.5, 300.0])
async def test_the_reaper_follows_the_deadlines_in_order(
    autojump_clock: trio.testing.MockClock, limit: float
) -> None:
    waits = SessionWaits(limit)
    log: list[tuple[float, object]] = []
    async with trio.open_nursery() as nursery:
        for delay in (0.0, 0.0, 0.1, 0.2, 0.3):
            await trio.sleep(delay)
            nursery.start_soon(reader, waits, trio.testing.memory_stream_pair()[1], log)
    starts = [0.0, 0.0, 0.1, 0.3, 0.6]
    assert [ended for _, ended in log] == [WaitEnd.IDLE] * len(starts)
    assert [at for at, _ in log] == pytest.approx([start + limit for start in starts])
