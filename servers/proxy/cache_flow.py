"""GET and HEAD through the cache: reuse, revalidate, or fetch and store (RFC 9111 section 4).

Strategy: the policy (:mod:`netlab.proto.http_cache`) decides, this module carries it out:

* FRESH, or STALE allowed by the client: answer from the store (memory tier, else disk); the
  client's own If-None-Match / If-Modified-Since may turn that into a 304 (section 4.3.2).
* STALE_WHILE_REVALIDATE: answer from the store now and revalidate in the background
  (RFC 5861 section 3), at most one background revalidation per URI at a time.
* REVALIDATE: ask the origin with the stored validators (section 4.3.1).  A 304 updates the
  stored headers (4.3.4) and the stored body is sent; a new response replaces it; an error or no
  answer at all falls back to the stale response where stale-if-error allows (RFC 5861 section 4).
* MISS: forward the request; a storable response is written to the store while it streams to the
  client, and becomes an entry only once complete (before the client gets the last chunk, so that
  asking again is a hit), and only if no unsafe request invalidated the URI since this request
  began (section 4.4; the store's :class:`Generation` tells).
* GATEWAY_TIMEOUT: only-if-cached and nothing usable (section 5.2.1.7): 504.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import TYPE_CHECKING

import h11

from netlab.proto.http_cache import Outcome, is_error_status
from netlab.proto.http_cache_control import RequestDirectives
from netlab.proto.http_fields import Fields, first_value, has_field, parse_delta_seconds
from netlab.proto.http_forwarding import Target
from netlab.proto.http_stored import select, vary_matches
from netlab.proto.http_validation import (
    CLIENT_CONDITIONALS,
    client_wants_304,
    freshen,
    not_modified_fields,
    revalidation_fields,
)
from netlab.store.http_store import BodyGone, Entry, Generation
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.forward import Exchange, UpstreamBroken
from servers.proxy.pool import UpstreamError

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
            _revalidate_in_background(proxy, request, target, entry, since)
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
        if await _revalidate(proxy, client, request, target, tx, entry, directives, entries, since):
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


async def send_stored(
    proxy: Proxy,
    client: ClientConnection,
    request: h11.Request,
    entry: Entry,
    tx: Transaction,
    tag: str,
    *,
    age: float | None = None,
    fields: Fields | None = None,
) -> bool:
    """Answer from the store; False if the body has vanished (evicted meanwhile).

    ``age`` is the stored response's current age, and ``fields`` the request's header fields
    (or only those among them that matter here), if the caller has them already.
    """
    stored = entry.stored
    if fields is None:
        fields = request.headers.raw_items()
    if age is None:
        age = proxy.policy.age(stored, proxy.clock())
    age = max(0, int(age))  # RFC 9111 section 5.1: whole seconds
    if fields and client_wants_304(request.method, fields, stored):
        # Section 4.3.2: the client's copy is the one we hold.
        tx.tag = "TCP_INM_HIT" if has_field(fields, b"if-none-match") else "TCP_IMS_HIT"
        tx.status = 304
        headers = [*not_modified_fields(stored), (b"Age", b"%d" % age), proxy.x_cache(b"HIT")]
        await client.send_response(304, headers, b"")
        return True
    # The stored head, serialised once, goes out as it is (ClientConnection.send_prepared).
    head = proxy.stored_head(entry, age)
    tx.status, tx.content_type = stored.status, stored.content_type or "-"
    if request.method == b"HEAD":
        tx.tag = tag
        await client.send_prepared(head)
        return True
    body = proxy.store.memory_body(entry, tx.start)
    if body is not None:
        tx.tag = "TCP_MEM_HIT" if tag == "TCP_HIT" else tag
        await client.send_prepared(head, body)
        return True
    async with aclosing(proxy.store.read_body(entry)) as chunks:
        try:
            first = await anext(chunks)
        except BodyGone:
            return False
        except StopAsyncIteration:
            first = b""
        tx.tag = tag
        try:
            await client.send_prepared(head, first)
            async for chunk in chunks:
                await client.send_prepared_data(chunk)
        except OSError as exc:
            # The file could not be read to the end: the client must see a cut response.
            log.warning("reading the stored body of %s failed: %s", entry.key, exc)
            tx.aborted = True
            client.mark_broken()
    return True


async def _revalidate(
    proxy: Proxy,
    client: ClientConnection,
    request: h11.Request,
    target: Target,
    tx: Transaction,
    entry: Entry,
    directives: RequestDirectives,
    entries: list[Entry],
    since: Generation,
) -> bool:
    """Validate ``entry`` with the origin and answer; False if a plain fetch must follow."""
    fields = _conditional_fields(proxy, request, target, entry)
    modified_tag = "TCP_CLIENT_REFRESH_MISS" if directives.no_cache else "TCP_REFRESH_MODIFIED"
    try:
        # GET even for a client's HEAD: a changed response is then stored whole.
        async with proxy.forwarder.exchange(target, b"GET", fields) as exchange:
            tx.direct(exchange.conn.address)
            if exchange.status == 304:
                updated = freshen(
                    entry.stored,
                    exchange.response.headers.raw_items(),
                    request_time=exchange.request_time,
                    response_time=exchange.response_time,
                )
                await exchange.discard_body()
                if updated is None:
                    # The 304 is about some other response (section 4.3.4): drop ours, fetch.
                    await proxy.store.remove(entry)
                    return False
                entry = await proxy.store.update(entry, updated)
            elif is_error_status(exchange.status) and proxy.policy.stale_on_error(
                directives, entry.stored, proxy.clock()
            ):
                await exchange.discard_body()
                return await send_stored(proxy, client, request, entry, tx, "TCP_REFRESH_FAIL_OLD")
            else:
                tag = "TCP_REFRESH_FAIL_ERR" if exchange.status >= 500 else modified_tag
                await _store_and_relay(
                    proxy, client, request, target, tx, exchange, entries, tag, b"GET", since
                )
                return True
    except (UpstreamError, UpstreamBroken) as exc:
        if proxy.policy.stale_on_error(directives, entry.stored, proxy.clock()):
            log.info("serving stale %s: %s", target.uri, exc)
            return await send_stored(proxy, client, request, entry, tx, "TCP_REFRESH_FAIL_OLD")
        # Section 4.2.4 / 5.2.2.2: a response that must be revalidated is never served stale;
        # when the origin cannot be reached the answer is 504 (Gateway Timeout).
        status = 504 if entry.stored.directives.must_revalidate else getattr(exc, "status", 502)
        tx.tag, tx.status = "TCP_REFRESH_FAIL_ERR", status
        await client.send_error(status, str(exc), target.uri)
        return True
    return await send_stored(proxy, client, request, entry, tx, "TCP_REFRESH_UNMODIFIED")


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
            await _store_and_relay(
                proxy, client, request, target, tx, exchange, entries, tag, request.method, since
            )
    except UpstreamError as exc:
        tx.tag, tx.status = tag, exc.status
        await client.send_error(exc.status, exc.message, target.uri)


async def _store_and_relay(
    proxy: Proxy,
    client: ClientConnection,
    request: h11.Request,
    target: Target,
    tx: Transaction,
    exchange: Exchange,
    entries: list[Entry],
    tag: str,
    upstream_method: bytes,
    since: Generation,
) -> None:
    """Relay the origin's response, storing it on the way if the policy allows (section 3).

    The entry is committed once the whole body has arrived, before the client gets its last
    chunk.  Meanwhile another client may have sent an unsafe request for the same URI and seen it
    invalidate what was stored; ``since`` (the store's generation when this request began) makes
    the store drop this commit, which would otherwise land after the invalidation.
    """
    fields = request.headers.raw_items()
    directives = RequestDirectives.from_fields(fields)
    response_fields = exchange.response.headers.raw_items()
    why_not = proxy.policy.storable(
        method=upstream_method,
        request_fields=fields,
        request_directives=directives,
        status=exchange.status,
        response_fields=response_fields,
    )
    headers = proxy.client_headers(exchange, b"MISS")
    tx.tag = tag
    superseded = [e for e in entries if _same_variant(e, fields)]
    if why_not is not None:
        log.debug("not storing %s: %s", target.uri, why_not)
        if superseded and upstream_method == b"GET" and exchange.status != 304:
            await proxy.store.remove(superseded[0])  # what was stored is no longer current
        await proxy.relay(client, exchange, tx, headers=headers)
        return
    writer = proxy.store.begin(
        target.uri, parse_delta_seconds(first_value(response_fields, b"content-length")), since=since
    )

    async def commit() -> None:
        stored = proxy.policy.to_store(
            request_fields=fields,
            status=exchange.status,
            reason=exchange.response.reason,
            response_fields=proxy.forwarded_headers(exchange),
            request_time=exchange.request_time,
            response_time=exchange.response_time,
        )
        await writer.commit(stored, [e.id for e in superseded])

    try:
        await proxy.relay(client, exchange, tx, headers=headers, tee=writer.write, before_end=commit)
    finally:
        writer.abort()  # a no-op after a commit; otherwise nothing incomplete is kept


def _conditional_fields(
    proxy: Proxy, request: h11.Request, target: Target, entry: Entry
) -> list[tuple[bytes, bytes]]:
    """The client's request as a conditional request for ``entry`` (section 4.3.1)."""
    fields = proxy.upstream_fields(request, target)
    kept = [(n, v) for n, v in fields if n.lower() not in CLIENT_CONDITIONALS]
    return kept + revalidation_fields(entry.stored)


def _same_variant(entry: Entry, fields: Fields) -> bool:
    return vary_matches(entry.stored, fields)


def _revalidate_in_background(
    proxy: Proxy, request: h11.Request, target: Target, entry: Entry, since: Generation
) -> None:
    if target.uri in proxy.revalidating:
        return
    proxy.revalidating.add(target.uri)
    fields = _conditional_fields(proxy, request, target, entry)
    proxy.background.start_soon(
        _background_revalidation, proxy, target, entry, fields, list(request.headers.raw_items()), since
    )


async def _background_revalidation(
    proxy: Proxy,
    target: Target,
    entry: Entry,
    fields: list[tuple[bytes, bytes]],
    client_fields: Fields,
    since: Generation,
) -> None:
    """RFC 5861 section 3: bring a stale response up to date with no client waiting."""
    proxy.stats.background_revalidations += 1
    try:
        async with proxy.forwarder.exchange(target, b"GET", fields) as exchange:
            if exchange.status == 304:
                updated = freshen(
                    entry.stored,
                    exchange.response.headers.raw_items(),
                    request_time=exchange.request_time,
                    response_time=exchange.response_time,
                )
                await exchange.discard_body()
                if updated is not None:
                    await proxy.store.update(entry, updated)
                return
            response_fields = exchange.response.headers.raw_items()
            why_not = proxy.policy.storable(
                method=b"GET",
                request_fields=client_fields,
                request_directives=RequestDirectives.from_fields(client_fields),
                status=exchange.status,
                response_fields=response_fields,
            )
            if why_not is not None or is_error_status(exchange.status):
                await exchange.discard_body()
                return
            writer = proxy.store.begin(target.uri, since=since)
            try:
                async for chunk in exchange.body():
                    await writer.write(chunk)
                stored = proxy.policy.to_store(
                    request_fields=client_fields,
                    status=exchange.status,
                    reason=exchange.response.reason,
                    response_fields=proxy.forwarded_headers(exchange),
                    request_time=exchange.request_time,
                    response_time=exchange.response_time,
                )
                await writer.commit(stored, [entry.id])
            finally:
                writer.abort()
    except (UpstreamError, UpstreamBroken) as exc:
        log.info("background revalidation of %s failed: %s", target.uri, exc)
    finally:
        proxy.revalidating.discard(target.uri)
