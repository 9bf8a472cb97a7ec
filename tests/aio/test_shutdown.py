"""run_services: start in order, stop in reverse order, each service drained before the next."""

from __future__ import annotations

import trio
import trio.testing

from netlab.aio.shutdown import Lifetime, Service, run_services


def _service(name: str, log: list[str], *, start_time: float = 0.0, drain_time: float = 0.0) -> Service:
    async def serve(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await trio.sleep(start_time)
        log.append(f"start {name}")
        task_status.started([f"{name} up"])
        await lifetime.stopping.wait()
        log.append(f"stopping {name}")
        await trio.sleep(drain_time)
        log.append(f"stopped {name}")

    return Service(name, serve)


async def test_services_stop_in_reverse_order_each_drained(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    lines: list[str] = []
    services = [
        _service("lab", log),
        _service("resolver", log, drain_time=2),
        _service("proxy", log, drain_time=1),
    ]
    async with trio.open_nursery() as nursery:
        lifetime = await nursery.start(
            lambda task_status: run_services(
                services, grace_period=10, on_started=lambda s, ls: lines.extend(ls), task_status=task_status
            )
        )
        start = trio.current_time()
        lifetime.stop()
    assert lines == ["lab up", "resolver up", "proxy up"]
    assert log[3:] == [
        "stopping proxy",
        "stopped proxy",
        "stopping resolver",
        "stopped resolver",
        "stopping lab",
        "stopped lab",
    ]
    assert trio.current_time() - start == 3  # drained one after the other


async def test_a_stop_during_start_up_starts_nothing_more(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    shared = Lifetime()
    services = [_service("lab", log), _service("slow", log, start_time=5), _service("never", log)]

    async def stop_soon() -> None:
        await trio.sleep(1)
        shared.stop()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_soon)
        await run_services(services, grace_period=10, on_started=lambda s, ls: None, lifetime=shared)
    assert "start never" not in log
    assert log[-2:] == ["stopping lab", "stopped lab"]  # the lab outlived the service starting on it


async def test_grace_period_cuts_off_a_service_that_does_not_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    services = [_service("stubborn", log, drain_time=100)]
    async with trio.open_nursery() as nursery:
        lifetime = await nursery.start(
            lambda task_status: run_services(
                services, grace_period=5, on_started=lambda s, ls: None, task_status=task_status
            )
        )
        start = trio.current_time()
        lifetime.stop()
    assert trio.current_time() - start == 5
    assert "stopped stubborn" not in log


async def test_a_service_that_stops_itself_stops_the_run(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []

    async def one_shot(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        task_status.started(["one-shot up"])
        await trio.sleep(2)  # its one transfer
        lifetime.stop()

    services = [_service("lab", log), Service("one-shot", one_shot)]
    with trio.fail_after(10):
        await run_services(services, grace_period=5, on_started=lambda s, ls: None)
    assert log == ["start lab", "stopping lab", "stopped lab"]
