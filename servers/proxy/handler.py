"""Routing one request: access control, CONNECT, the proxy's own pages, the cache, or straight through.

Strategy: :class:`Proxy` holds what every request needs (configuration, cache store and policy,
the upstream pool, counters, the access log) and :meth:`Proxy.handle` decides per request:

* clients outside the ``allow`` networks get 403 (the proxy must never be an open proxy);
* CONNECT goes to :mod:`servers.proxy.tunnel`;
* the status page and ``OPTIONS *`` are answered by :mod:`servers.proxy.local`; other
  origin-form requests get 400 (:mod:`netlab.proto.http_forwarding` decides, including the
  URL-prefix form);
* GET and HEAD go through the cache (:mod:`servers.proxy.cache_flow`);
* every other method is forwarded as is, and invalidates what it may have changed (RFC 9111
  section 4.4).

Every request ends with one access-log line and an update of the counters.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass

import h11
import trio

from netlab.aio.sessions import SessionWaits
from netlab.config import ProxyConfig
from netlab.proto.http_cache import CachePolicy, invalidated_uris
from netlab.proto.http_cache_control import NO_REQUEST_DIRECTIVES, RequestDirectives
from netlab.proto.http_fields import first_value, format_http_date, has_field
from netlab.proto.http_forwarding import (
    ConnectTarget,
    LocalTarget,
    Target,
    TargetError,
    max_forwards,
    parse_request_target,
    target_from_uri,
    via_loops,
)
from netlab.proto.http_freshness import Heuristic
from netlab.proto.http_validation import CLIENT_CONDITIONALS, ORIGIN_ONLY_CONDITIONALS
from netlab.store.http_store import Entry, HttpStore
from servers.proxy import cache_flow, local, revalidate, tunnel
from servers.proxy.accesslog import AccessLog, Transaction
from servers.proxy.client import ClientConnection, ClientGone
from servers.proxy.forward import Exchange, Forwarder, UpstreamBroken, request_fields, response_fields
from servers.proxy.pool import ConnectionPool, Connects, UpstreamError
from servers.proxy.status import Stats, WorkerReports
from servers.proxy.wire import RequestMemo, prepare_head

__all__ = ["Proxy"]

log = logging.getLogger(__name__)

_MEMO_SIZE = 4096  # entries kept by each small memo below


class Proxy:
    """The state shared by every connection of one proxy server."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        store: HttpStore,
        connector: Connects,
        pool: ConnectionPool,
        clock: Callable[[], float],
        access_log: logging.Logger,
        background: trio.Nursery,
        own_authorities: Collection[str],
    ) -> None:
        self.config = config
        self.store = store
        self.connector = connector
        self.pool = pool
        self.clock = clock
        self.access_log = AccessLog(access_log)
        self.background = background
        self.own_authorities = frozenset(a.lower() for a in own_authorities)
        self.received_by = next(iter(sorted(self.own_authorities)), "netlab")
        self.forwarder = Forwarder(pool, clock=clock, upstream_timeout=config.upstream_timeout)
        self.policy = CachePolicy(
            shared=True, heuristic=Heuristic(config.heuristic_fraction, config.heuristic_max)
        )
        self.allow = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self.stats = Stats(started=clock())
        self.x_cache_name = b"netlab"
        self.waits = SessionWaits(config.idle_timeout)
        self.request_memo = RequestMemo()
        self.reports: WorkerReports | None = None  # with several worker processes
        self.revalidating: set[str] = set()  # URIs with a background revalidation running
        self._allowed: dict[str, bool] = {}
        self._heads: dict[int, tuple[Entry, int, bytes]] = {}
        self._targets: dict[bytes, Target | ConnectTarget | LocalTarget] = {}

    @property
    def closing(self) -> bool:
        return self.waits.closing.is_set()

    def begin_shutdown(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        self.waits.shut_down()

    # -- requests --------------------------------------------------------------------------------

    def allowed(self, peer: str) -> bool:
        """Whether the client at ``peer`` may use the proxy (remembered: clients are few)."""
        verdict = self._allowed.get(peer)
        if verdict is None:
            try:
                address = ipaddress.ip_address(peer.split("%")[0])
                verdict = any(address in net for net in self.allow)
            except ValueError:
                verdict = False
            if len(self._allowed) >= _MEMO_SIZE:
                self._allowed.clear()
            self._allowed[peer] = verdict
        return verdict

    def target(self, method: bytes, target: bytes) -> Target | ConnectTarget | LocalTarget:
        """The parsed request target; those of GET and HEAD are remembered, being the most repeated.

        Raises:
            TargetError: see :func:`parse_request_target`.
        """
        if method not in (b"GET", b"HEAD"):
            return parse_request_target(method, target, self.own_authorities)
        parsed = self._targets.get(target)
        if parsed is None:
            parsed = parse_request_target(method, target, self.own_authorities)
            if len(self._targets) >= _MEMO_SIZE:
                self._targets.clear()
            self._targets[target] = parsed
        return parsed

    async def handle(self, client: ClientConnection, request: h11.Request) -> None:
        tx = Transaction(
            start=self.clock(),
            client=client.peer,
            method=request.method.decode("ascii", "replace"),
            url=request.target.decode("latin-1"),
        )
        try:
            await self._dispatch(client, request, tx)
        except ClientGone:
            tx.aborted = True
            client.mark_broken()
        finally:
            tx.bytes_sent = client.bytes_sent
            self.stats.record(tx)
            self.access_log.write(tx, self.clock())

    async def reject(self, client: ClientConnection, status: int, message: str) -> None:
        """Answer a request h11 could not even parse (400, 431) or that came too slowly (408)."""
        tx = Transaction(start=self.clock(), client=client.peer, method="NONE", url="error:invalid-request")
        tx.status = status
        await client.send_error(status, message)
        tx.bytes_sent = client.bytes_sent
        self.stats.record(tx)
        self.access_log.write(tx, self.clock())

    async def _dispatch(self, client: ClientConnection, request: h11.Request, tx: Transaction) -> None:
        if not self.allowed(client.peer):
            # Never an open proxy: only the configured client networks may use it.
            tx.tag, tx.status = "TCP_DENIED", 403
            await client.send_error(403, "Access denied: this proxy serves only its configured clients.")
            return
        method = request.method
        try:
            target = self.target(method, request.target)
        except TargetError as exc:
            tx.status = exc.status
            await client.send_error(exc.status, exc.message, tx.url)
            return
        if isinstance(target, ConnectTarget):
            await tunnel.run(self, client, target, tx)
            return
        if isinstance(target, LocalTarget):
            await local.answer(self, client, request, target, tx)
            return
        tx.url = target.uri
        fields = request.headers.raw_items()
        traits = _Traits.of(request.headers)
        if traits.via and via_loops(traits.via, self.received_by):
            tx.status = 508
            await client.send_error(
                508, "Forwarding loop: this request has already passed through this proxy."
            )
            return
        if method in (b"TRACE", b"OPTIONS") and max_forwards(fields) == 0:
            # RFC 9110 section 7.6.2: the last hop the client asked for answers itself.
            await local.answer_last_hop(client, request, tx)
            return
        has_body = client.request_has_body
        if method in (b"GET", b"HEAD") and not traits.origin_only and not has_body:
            directives = RequestDirectives.from_fields(fields) if traits.directives else NO_REQUEST_DIRECTIVES
            conditional = traits.conditional
            await cache_flow.serve(
                self, client, request, target, tx, fields, directives=directives, conditional=conditional
            )
        else:
            await self.forward_uncached(client, request, target, tx, has_body=has_body)

    async def forward_uncached(
        self,
        client: ClientConnection,
        request: h11.Request,
        target: Target,
        tx: Transaction,
        *,
        has_body: bool,
    ) -> None:
        """Forward a request the cache does not answer, then invalidate (RFC 9111 section 4.4)."""
        fields = self.upstream_fields(request, target)
        if request.method in (b"TRACE", b"OPTIONS"):
            hops = max_forwards(fields)
            if hops is not None:
                fields = [(n, v) for n, v in fields if n.lower() != b"max-forwards"]
                fields.append((b"Max-Forwards", str(hops - 1).encode()))
        body = client.body() if has_body else None
        tx.tag = "TCP_MISS"
        try:
            async with self.forwarder.exchange(
                target, request.method, fields, body=body, on_informational=self.informational_relay(client)
            ) as exchange:
                tx.direct(exchange.conn.address)
                response_headers = exchange.response.headers.raw_items()
                doomed = invalidated_uris(request.method, exchange.status, target.uri, response_headers)
                if doomed:
                    keys = [_key(uri) for uri in doomed]
                    removed = await self.store.remove_keys([k for k in keys if k])
                    log.debug("%s %s invalidated %d stored responses", tx.method, target.uri, removed)
                elif request.method == b"HEAD" and exchange.status == 200:
                    await revalidate.apply_head(self, target, request.headers.raw_items(), exchange)
                await self.relay(client, exchange, tx)
        except UpstreamError as exc:
            tx.status = exc.status
            await client.send_error(exc.status, exc.message, target.uri)

    def upstream_fields(self, request: h11.Request, target: Target) -> list[tuple[bytes, bytes]]:
        return request_fields(request.headers.raw_items(), target, self.received_by, request.http_version)

    def informational_relay(
        self, client: ClientConnection
    ) -> Callable[[h11.InformationalResponse], Awaitable[None]]:
        """Passes an origin's 1xx on: 100 only to a client waiting for it (RFC 9110 10.1.1)."""

        async def relay(event: h11.InformationalResponse) -> None:
            if event.status_code == 100 and not client.protocol.they_are_waiting_for_100_continue:
                return
            if event.status_code == 101 or client.protocol.their_http_version != b"1.1":
                return  # no protocol switch through the proxy; HTTP/1.0 clients do not know 1xx
            await client.send_informational(event.status_code, list(event.headers.raw_items()))

        return relay

    def forwarded_headers(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        """The origin's response fields as this proxy passes them on (and stores them)."""
        response = exchange.response
        fields = response_fields(response.headers.raw_items(), self.received_by, response.http_version)
        if not has_field(fields, b"date"):
            # RFC 9110 section 6.6.1: a response forwarded without a Date gets the time it arrived.
            fields.append((b"Date", format_http_date(exchange.response_time)))
        return fields

    def x_cache(self, result: bytes) -> tuple[bytes, bytes]:
        """The X-Cache field that tells a client how its response was obtained (as Squid does)."""
        return (b"X-Cache", result + b" from " + self.x_cache_name)

    def client_headers(self, exchange: Exchange, x_cache: bytes) -> list[tuple[bytes, bytes]]:
        headers = self.forwarded_headers(exchange)
        headers.append(self.x_cache(x_cache))
        return headers

    def stored_head(self, entry: Entry, age: int) -> bytes:
        """The head of a response from the store, serialised (:func:`prepare_head`).

        Built once per stored response and value of Age, which changes once a second: a hot
        object's head is reused by every hit in between.
        """
        memo = self._heads.get(entry.id)
        if memo is not None and memo[0] is entry and memo[1] == age:
            return memo[2]
        stored = entry.stored
        head = prepare_head(
            stored.status, stored.reason, [*stored.headers, (b"Age", b"%d" % age), self.x_cache(b"HIT")]
        )
        if len(self._heads) >= _MEMO_SIZE:
            self._heads.clear()
        self._heads[entry.id] = (entry, age, head)
        return head

    async def relay(
        self,
        client: ClientConnection,
        exchange: Exchange,
        tx: Transaction,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        tee: Callable[[bytes], Awaitable[None]] | None = None,
        before_end: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Send the origin's response on to the client as it arrives (and to ``tee``).

        The last chunk is held back until the origin's response is complete and ``before_end``
        (storing it) is done: a client that has the whole response, and asks again, finds it
        in the cache.

        Returns:
            Whether the whole body was relayed; if the origin failed mid-body the client's
            connection is cut (it must see an incomplete response, not a short valid one).
        """
        response = exchange.response
        if headers is None:
            headers = self.client_headers(exchange, b"MISS")
        tx.status = response.status_code
        content_type = first_value(headers, b"content-type")
        if content_type:
            tx.content_type = content_type.decode("latin-1").split(";")[0].strip()
        await client.send_response(response.status_code, headers, reason=response.reason)
        held = b""
        try:
            async for chunk in exchange.body():
                await client.send_data(held)
                held = chunk
                if tee is not None:
                    await tee(chunk)
        except UpstreamBroken as exc:
            log.info("%s: response cut short: %s", tx.url, exc)
            tx.aborted = True
            client.mark_broken()
            return False
        if before_end is not None:
            await before_end()
        await client.send_data(held)
        await client.send_end()
        return True


_ROUTING_FIELDS = ORIGIN_ONLY_CONDITIONALS | CLIENT_CONDITIONALS | {b"via", b"cache-control", b"pragma"}


@dataclass(slots=True)
class _Traits:
    """What routing needs to know of a request's fields, found in one pass over them."""

    via: list[tuple[bytes, bytes]]
    origin_only: bool = False  # preconditions for the origin, or a range: not answered by the cache
    directives: bool = False  # Cache-Control or Pragma: directives to parse (RFC 9111 section 5.2.1)
    conditional: bool = False  # validators the cache may answer itself (section 4.3.2)

    @classmethod
    def of(cls, headers: Iterable[tuple[bytes, bytes]]) -> _Traits:
        """From h11's headers, whose names come lower-cased."""
        traits = cls([])
        for name, value in headers:
            if name not in _ROUTING_FIELDS:
                continue
            if name == b"via":
                traits.via.append((name, value))
            elif name in CLIENT_CONDITIONALS:
                traits.conditional = True
            elif name in ORIGIN_ONLY_CONDITIONALS:
                traits.origin_only = True
            else:
                traits.directives = True
        return traits


def _key(uri: str) -> str | None:
    try:
        return target_from_uri(uri).uri
    except TargetError:
        return None
