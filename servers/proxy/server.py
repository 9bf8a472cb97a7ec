"""The proxy server: listeners, a task per client connection, and a graceful stop.

Strategy (as hypercorn stops): three nurseries.  ``acceptor`` runs ``trio.serve_listeners`` and is
cancelled first when ``stopping`` is set, so no new connection is accepted; connections live in
``handlers`` and finish the request in progress (idle ones are woken and closed at once); the
``background`` nursery holds work that belongs to no client (stale-while-revalidate fetches, the
upstream pool's reaper) and is cancelled last.  The caller's cancel scope bounds the whole drain
(``netlab up`` gives it the configured grace period).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Collection
from functools import partial

import h11
import trio

from netlab.addr import format_hostport, is_loopback, parse_hostport
from netlab.aio.dns_stub import StubResolver
from netlab.aio.sessions import Waiter
from netlab.config import ProxyConfig
from netlab.log import access_logger
from netlab.store.http_store import HttpStore
from servers.proxy.client import ClientConnection, ClientGone
from servers.proxy.handler import Proxy
from servers.proxy.pool import ConnectionPool, Connector, Connects
from servers.proxy.status import WorkerReports

__all__ = [
    "WORKER_REPORTS",
    "handle_connection",
    "listener_authorities",
    "open_listeners",
    "peer_address",
    "serve",
]

log = logging.getLogger(__name__)

Listeners = list[trio.abc.Listener[trio.abc.Stream]]
WORKER_REPORTS = "workers"  # where worker processes report their counters, in the cache directory


async def open_listeners(listen: str, *, reuse_port: bool = False, backlog: int = 1024) -> Listeners:
    """TCP listeners on ``listen`` (HOST:PORT); with ``reuse_port`` several processes may share it."""
    host, port = parse_hostport(listen, default_port=8080)
    if not reuse_port:
        return list(await trio.open_tcp_listeners(port, host=host, backlog=backlog))
    (family, type_, proto, _, address), *_ = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sock = trio.socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # SO_REUSEPORT: the kernel spreads incoming connections over every process listening here.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    await sock.bind(address)
    sock.listen(backlog)
    return [trio.SocketListener(sock)]


def listener_authorities(listeners: Listeners) -> list[str]:
    """The ``host:port`` names that reach these listeners (for loop protection and Via)."""
    names: list[str] = []
    for listener in listeners:
        if not isinstance(listener, trio.SocketListener):
            continue
        host, port = listener.socket.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            names += [f"127.0.0.1:{port}", f"[::1]:{port}", f"localhost:{port}"]
        else:
            names.append(format_hostport(host, port))
            if is_loopback(host):
                names.append(f"localhost:{port}")
    return names


def peer_address(stream: trio.abc.Stream) -> str:
    """The client's IP address, or "-" for a stream that is not a socket."""
    if isinstance(stream, trio.SocketStream):
        return str(stream.socket.getpeername()[0])
    return "-"


async def serve(
    config: ProxyConfig,
    store: HttpStore,
    listeners: Listeners,
    *,
    stopping: trio.Event | None = None,
    resolver: StubResolver | None = None,
    connector: Connects | None = None,
    clock: Callable[[], float],
    own_authorities: Collection[str] | None = None,
    peer_of: Callable[[trio.abc.Stream], str] = peer_address,
    worker: tuple[int, int] | None = None,
    task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stopping`` is set (forever if None), then drain and return.

    Args:
        store: the open cache store (the caller closes it).
        clock: wall-clock seconds (:class:`netlab.aio.wallclock.WallClock`).
        own_authorities: names of this proxy; by default those of the socket listeners.
        peer_of: how to learn a client's address (tests with memory streams pass their own).
        connector: how to reach origins; by default TCP, resolving names with ``resolver``.
        worker: (number, count) of this process among ``--workers`` processes, which share
            their counters (:class:`~servers.proxy.status.WorkerReports`).
    """
    if connector is None:
        connector = Connector(resolver, config.connect_timeout)
    pool = ConnectionPool(
        connector,
        idle_timeout=config.pool_idle_timeout,
        per_host=config.pool_per_host,
        max_header_bytes=config.max_header_kb * 1024,
    )
    authorities = listener_authorities(listeners) if own_authorities is None else list(own_authorities)
    try:
        async with trio.open_nursery() as background:
            proxy = Proxy(
                config,
                store=store,
                connector=connector,
                pool=pool,
                clock=clock,
                access_log=access_logger("proxy"),
                background=background,
                own_authorities=authorities,
            )
            background.start_soon(pool.run_reaper)
            background.start_soon(proxy.access_log.run)
            if worker is not None:
                number, count = worker
                proxy.reports = WorkerReports(store.directory / WORKER_REPORTS, number, count, proxy.stats)
                background.start_soon(proxy.reports.run)
            handler = partial(handle_connection, proxy=proxy, peer_of=peer_of)
            async with trio.open_nursery() as handlers:
                async with trio.open_nursery() as acceptor:
                    await acceptor.start(
                        partial(trio.serve_listeners, handler, listeners, handler_nursery=handlers)
                    )
                    task_status.started(proxy)
                    if stopping is None:
                        await trio.sleep_forever()
                    else:
                        await stopping.wait()
                    acceptor.cancel_scope.cancel()
                proxy.begin_shutdown()
            background.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await pool.aclose()


async def handle_connection(
    stream: trio.abc.Stream, *, proxy: Proxy, peer_of: Callable[[trio.abc.Stream], str] = peer_address
) -> None:
    """Serve one client connection: requests one after another until either side stops."""
    config = proxy.config
    proxy.stats.connections += 1
    proxy.stats.active_connections += 1
    peer = peer_of(stream)

    async def session(waiter: Waiter) -> None:
        client = ClientConnection(
            stream,
            peer,
            waiter,
            max_header_bytes=config.max_header_kb * 1024,
            request_timeout=config.request_timeout,
            memo=proxy.request_memo,
        )
        await _serve_requests(client, proxy)

    try:
        # An idle client, or one waiting when the server shuts down, is closed without a word
        # (RFC 9112 section 9.8): why it ended does not matter here.
        await proxy.waits.run(session)
    except (ClientGone, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away
    except Exception:
        # A bug must cost this connection only: the proxy goes on serving everyone else.
        log.exception("connection from %s failed", peer)
    finally:
        proxy.stats.active_connections -= 1


async def _serve_requests(client: ClientConnection, proxy: Proxy) -> None:
    while True:
        try:
            request = await client.next_request()
        except h11.RemoteProtocolError as exc:
            # 400 for a malformed request, 431 for a head over the size limit (h11's hint).
            await proxy.reject(client, exc.error_status_hint, f"Bad request: {exc}")
            return
        except trio.TooSlowError:
            await proxy.reject(client, 408, "The request head did not arrive in time.")
            return
        if request is None:
            return
        await proxy.handle(client, request)
        if proxy.closing or not await client.finish_request():
            return
