"""GET and HEAD through the cache: reuse, revalidate, or fetch and store (RFC 9111 section 4).

Strategy: the policy (:mod:`netlab.proto.http_cache`) decides, this module carries it out, with
:mod:`servers.proxy.replies` (answering from the store, storing while relaying) and
:mod:`servers.proxy.revalidate`:

* FRESH, or STALE allowed by the client: answer from the store (memory tier, else disk); the
  client's own If-None-Match / If-Modified-Since may turn that into a 304 (section 4.3.2).
* STALE_WHILE_REVALIDATE: answer from the store now and revalidate in the background
  (RFC 5861 section 3), at most one background revalidation per URI at a time.
* REVALIDATE: ask the origin with the stored validators (section 4.3.1).  A 304 (or for HEAD a
  matching 200, section 4.3.5) updates the stored headers (4.3.4) and the stored body is sent; a
  new response replaces it; an error or no answer at all falls back to the stale response where
  stale-if-error allows (RFC 5861 section 4).
* MISS: forward the request; a storable response is written to the store while it streams to the
  client, and becomes an entry only once complete (before the client gets the last chunk, so that
  asking again is a hit), and only if no unsafe request invalidated the URI since this request
  began (section 4.4; the store's :class:`Generation` tells).
* GATEWAY_TIMEOUT: only-if-cached and nothing usable (section 5.2.1.7): 504.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h11

from netlab.proto.http_cache import Outcome
from netlab.proto.http_cache_control import RequestDirectives
from netlab.proto.http_fields import Fields
from netlab.proto.http_forwarding import Target
from netlab.proto.http_stored import select
from netlab.store.http_generation import Generation
from netlab.store.http_store import Entry
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.pool import UpstreamError
from servers.proxy.replies import send_stored, store_and_relay
from servers.proxy.revalidate import revalidate, revalidate_in_background

if TYPE_CHECKING:
    from servers.proxy.handler import Proxy

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(
    proxy: Proxy,
    client: ClientConnection,
    request: h11.Request,
    target: Target,
    tx: Transaction,
    fields: Fields,
    *,
    directives: RequestDirectives,
    conditional: bool,
) -> None:
    """Answer a GET or HEAD request for ``target`` as the policy says.

    ``fields`` are the request's header fields, ``directives`` its Cache-Control, and
    ``conditional`` whether it carries validators of its own (If-None-Match, If-Modified-Since).
    """
    if proxy.store.shared:
        await proxy.store.refresh()  # other worker processes' changes
    since = proxy.store.generation()  # before the origin is asked: see _store_and_relay
    entries = proxy.store.variants(target.uri)
    entry = _select(fields, entries)
    decision = proxy.policy.decide(directives, entry.stored if entry else None, tx.start)
    outcome = decision.outcome
    if entry is not None and outcome in (Outcome.FRESH, Outcome.STALE, Outcome.STALE_WHILE_REVALIDATE):
        if outcome is not Outcome.FRESH:
            proxy.stats.stale_served += 1
        if outcome is Outcome.STALE_WHILE_REVALIDATE:
            revalidate_in_background(proxy, request, target, entry, since)
        # Without validators of its own the request's fields need not be looked at again.
        own = fields if conditional else ()
        if await send_stored(proxy, client, request, entry, tx, "TCP_HIT", age=decision.age, fields=own):
            return
        entry, tag = None, "TCP_SWAPFAIL_MISS"  # the body vanished: fetch it again
    elif outcome is Outcome.GATEWAY_TIMEOUT:
        tx.tag, tx.status = "TCP_MISS", 504
        await client.send_error(504, "Not in the cache, and the request said only-if-cached.", target.uri)
        return
    elif entry is not None and outcome is Outcome.REVALIDATE:
        if await revalidate(proxy, client, request, target, tx, entry, directives, entries, since):
            return
        entry, tag = None, "TCP_MISS"
    else:
        tag = "TCP_MISS"
    await _fetch(proxy, client, request, target, tx, entries, tag, since)


def _select(fields: Fields, entries: list[Entry]) -> Entry | None:
    if not entries:
        return None
    chosen = select(fields, [e.stored for e in entries])
    return next((e for e in entries if e.stored is chosen), None)


async def _fetch(
    proxy: Proxy,
    client: ClientConnection,
    request: h11.Request,
    target: Target,
    tx: Transaction,
    entries: list[Entry],
    tag: str,
    since: Generation,
) -> None:
    """Forward the client's request and relay (and maybe store) the response."""
    fields = proxy.upstream_fields(request, target)
    try:
        async with proxy.forwarder.exchange(
            target, request.method, fields, on_informational=proxy.informational_relay(client)
        ) as exchange:
            tx.direct(exchange.conn.address)
            await store_and_relay(
                proxy, client, request, target, tx, exchange, entries, tag, request.method, since
            )
    except UpstreamError as exc:
        tx.tag, tx.status = tag, exc.status
        await client.send_error(exc.status, exc.message, target.uri)
