"""``netlab proxy``: the caching proxy on its own, and its service for ``netlab up``.

Strategy: :func:`run` opens everything one proxy process needs (the cache store, the resolver,
the access log, the listeners) and serves until told to stop.  ``--workers N`` forks N such
processes before any event loop starts; they share the port (SO_REUSEPORT) and the cache
directory (the store's journal keeps their views of it in step).  The parent only waits, passing
SIGTERM and SIGINT on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path

import click
import trio

from netlab.addr import parse_hostport
from netlab.aio.dns_stub import StubResolver
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.aio.wallclock import WallClock
from netlab.cli import config_option, load_config
from netlab.config import NetlabConfig, data_path
from netlab.log import access_logger
from netlab.store.http_index import DiskIndex
from netlab.store.http_store import HttpStore
from servers.proxy.server import WORKER_REPORTS, open_listeners, serve
from servers.proxy.status import WorkerReports

__all__ = ["command", "run", "service"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def cache_directory(config: NetlabConfig) -> Path:
    return data_path(config, config.proxy.cache_dir, "proxy-cache")


async def run(
    config: NetlabConfig,
    stopping: trio.Event,
    *,
    worker: int | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One proxy process: serve until ``stopping`` is set, then drain and close the cache.

    ``worker`` is this process's number among ``--workers`` processes sharing the cache.
    """
    shared = worker is not None
    pc = config.proxy
    directory = cache_directory(config)
    clock = WallClock()
    store = await HttpStore.open(
        directory,
        clock=clock.now,
        max_bytes=pc.cache_mb * MIB,
        memory_bytes=pc.memory_cache_mb * MIB,
        memory_object_bytes=pc.memory_object_kb * 1024,
        max_object_bytes=pc.max_object_mb * MIB,
        shared=shared,
        recover=not shared,  # with several workers the parent recovered the directory first
    )
    handler = _open_access_log(pc.access_log)
    try:
        resolver = StubResolver(parse_hostport(pc.resolver, default_port=53)) if pc.resolver else None
        listeners = await open_listeners(pc.listen, reuse_port=shared)
        lines = []
        for listener in listeners:
            if isinstance(listener, trio.SocketListener):
                host, port = listener.socket.getsockname()[:2]
                lines.append(f"http://{host}:{port}/ (cache {directory}, {store.object_count} objects)")
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve,
                    pc,
                    store,
                    listeners,
                    stopping=stopping,
                    resolver=resolver,
                    clock=clock.now,
                    worker=None if worker is None else (worker, pc.workers),
                )
            )
            task_status.started(lines)
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
        if handler is not None:
            access_logger("proxy").removeHandler(handler)
            handler.close()


def _open_access_log(path: str) -> logging.Handler | None:
    """Write the access log to ``path`` (appending: several workers may share it)."""
    if not path:
        return None
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = access_logger("proxy")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def service(config: NetlabConfig) -> Service | None:
    """The proxy for ``netlab up`` (one process), or None when ``[proxy] enabled = false``."""
    if not config.proxy.enabled:
        return None

    async def serve_service(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await run(config, lifetime.stopping, task_status=task_status)

    return Service("proxy", serve_service)


@click.command("proxy")
@config_option
@click.option("--listen", help="HOST:PORT to listen on  [default: 127.0.0.1:8080]")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Disk cache directory.")
@click.option("--cache-mb", type=int, help="Disk cache size limit in MiB  [default: 1024]")
@click.option("--memory-cache-mb", type=int, help="Memory tier size in MiB  [default: 64]")
@click.option("--resolver", help="Recursive DNS resolver HOST:PORT (default: the system resolver).")
@click.option("--allow", multiple=True, help="Client network allowed to use the proxy (repeatable).")
@click.option("--connect-port", "connect_ports", type=int, multiple=True, help="Port CONNECT may reach.")
@click.option("--access-log", type=click.Path(dir_okay=False), help="Squid-format access log file.")
@click.option("--workers", type=click.IntRange(1, 64), help="Processes sharing the port  [default: 1]")
def command(
    config_file: Path | None,
    listen: str | None,
    cache_dir: str | None,
    cache_mb: int | None,
    memory_cache_mb: int | None,
    resolver: str | None,
    allow: tuple[str, ...],
    connect_ports: tuple[int, ...],
    access_log: str | None,
    workers: int | None,
) -> None:
    """Caching HTTP/1.1 proxy (RFC 9111) with CONNECT tunnels, for browsers and curl."""
    overrides = {
        "listen": listen,
        "cache_dir": cache_dir,
        "cache_mb": cache_mb,
        "memory_cache_mb": memory_cache_mb,
        "resolver": resolver,
        "allow": allow or None,
        "connect_ports": connect_ports or None,
        "access_log": access_log,
        "workers": workers,
    }
    config = load_config(config_file, {"proxy": overrides})
    try:
        _, port = parse_hostport(config.proxy.listen, default_port=8080)
    except ValueError as exc:
        raise click.UsageError(f"--listen: {exc}") from exc
    if config.proxy.workers > 1:
        if port == 0:
            raise click.UsageError("--workers needs a fixed port to share (not port 0)")
        sys.exit(_run_workers(config))
    svc = service(config) or Service("proxy", _disabled)
    trio.run(lambda: run_services([svc], grace_period=config.general.grace_period, on_started=_echo))


def _echo(svc: Service, lines: list[str]) -> None:
    for line in lines:
        click.echo(f"{svc.name:<8} {line}")
    sys.stdout.flush()


async def _disabled(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
    task_status.started(["disabled in the configuration"])


def _run_workers(config: NetlabConfig) -> int:
    """Fork ``workers`` processes serving the same port and cache; wait for them all."""
    index = DiskIndex(cache_directory(config))
    index.recover()  # once, before anyone else opens the directory
    index.close()
    WorkerReports.clear(cache_directory(config) / WORKER_REPORTS)  # a smaller set may run now
    children = []
    for number in range(config.proxy.workers):
        pid = os.fork()
        if pid == 0:
            # A process group of its own: a Ctrl-C at the terminal reaches the parent only, which
            # passes one SIGTERM on, so each worker sees one signal and stops gracefully.
            os.setpgid(0, 0)
            code = 0
            try:
                trio.run(_worker_main, config, number)
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except ChildProcessError:
                code = 0
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        status = status or os.waitstatus_to_exitcode(code)
    return status


async def _worker_main(config: NetlabConfig, number: int) -> None:
    async def serve_worker(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
        await run(config, lifetime.stopping, worker=number, task_status=task_status)

    def started(svc: Service, lines: list[str]) -> None:
        if number == 0:
            _echo(svc, [*lines, f"{config.proxy.workers} worker processes"])

    await run_services(
        [Service("proxy", serve_worker)], grace_period=config.general.grace_period, on_started=started
    )
