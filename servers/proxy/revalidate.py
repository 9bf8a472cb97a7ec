"""Revalidation: asking the origin whether a stored response is still current (RFC 9111 4.3).

Strategy: :func:`revalidate` sends the client's request as a conditional request with the stored
validators (section 4.3.1), with the client's own method.  A 304 updates the stored headers
(section 4.3.4), and so does a 200 answer to HEAD whose validators match (section 4.3.5); the
stored body then answers.  A new response replaces the stored one; an error, or no answer at all,
falls back to the stale response where stale-if-error allows (RFC 5861 section 4).
:func:`revalidate_in_background` does the same for stale-while-revalidate (RFC 5861 section 3)
with no client waiting, at most once per URI at a time; :func:`apply_head` applies any 200 answer
to a HEAD request to the stored GET responses it describes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h11

from netlab.proto.http_cache import is_error_status
from netlab.proto.http_cache_control import RequestDirectives
from netlab.proto.http_fields import Fields
from netlab.proto.http_forwarding import Target
from netlab.proto.http_stored import vary_matches
from netlab.proto.http_validation import CLIENT_CONDITIONALS, freshen, revalidation_fields, update_from_head
from netlab.store.http_generation import Generation
from netlab.store.http_store import Entry
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.forward import Exchange, UpstreamBroken
from servers.proxy.pool import UpstreamError
from servers.proxy.replies import send_stored, store_and_relay

if TYPE_CHECKING:
    from servers.proxy.handler import Proxy

__all__ = ["apply_head", "revalidate", "revalidate_in_background"]

log = logging.getLogger(__name__)


async def revalidate(
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
    fields = conditional_fields(proxy, request, target, entry)
    modified_tag = "TCP_CLIENT_REFRESH_MISS" if directives.no_cache else "TCP_REFRESH_MODIFIED"
    # The client's method: a client that wants the head only does not wait for a body to come.
    method = request.method
    try:
        async with proxy.forwarder.exchange(target, method, fields) as exchange:
            tx.direct(exchange.conn.address)
            response_fields = exchange.response.headers.raw_items()
            times = {"request_time": exchange.request_time, "response_time": exchange.response_time}
            if exchange.status == 304:
                updated = freshen(entry.stored, response_fields, **times)
                await exchange.discard_body()
                if updated is None:
                    # The 304 is about some other response (section 4.3.4): drop ours, fetch.
                    await proxy.store.remove(entry)
                    return False
                entry = await proxy.store.update(entry, updated)
            elif method == b"HEAD" and exchange.status == 200:
                updated = update_from_head(entry.stored, response_fields, **times)
                if updated is None:
                    # Section 4.3.5: the stored response is not the one described: it is stale,
                    # and of no more use than nothing (it is dropped); the new head goes on.
                    await proxy.store.remove(entry)
                    await store_and_relay(
                        proxy, client, request, target, tx, exchange, entries, modified_tag, method, since
                    )
                    return True
                await exchange.discard_body()
                entry = await proxy.store.update(entry, updated)
            elif is_error_status(exchange.status) and proxy.policy.stale_on_error(
                directives, entry.stored, proxy.clock()
            ):
                await exchange.discard_body()
                return await send_stored(proxy, client, request, entry, tx, "TCP_REFRESH_FAIL_OLD")
            else:
                tag = "TCP_REFRESH_FAIL_ERR" if exchange.status >= 500 else modified_tag
                await store_and_relay(
                    proxy, client, request, target, tx, exchange, entries, tag, method, since
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


def conditional_fields(
    proxy: Proxy, request: h11.Request, target: Target, entry: Entry
) -> list[tuple[bytes, bytes]]:
    """The client's request as a conditional request for ``entry`` (section 4.3.1)."""
    fields = proxy.upstream_fields(request, target)
    kept = [(n, v) for n, v in fields if n.lower() not in CLIENT_CONDITIONALS]
    return kept + revalidation_fields(entry.stored)


def revalidate_in_background(
    proxy: Proxy, request: h11.Request, target: Target, entry: Entry, since: Generation
) -> None:
    if target.uri in proxy.revalidating:
        return
    proxy.revalidating.add(target.uri)
    fields = conditional_fields(proxy, request, target, entry)
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


async def apply_head(proxy: Proxy, target: Target, request_fields: Fields, exchange: Exchange) -> None:
    """Section 4.3.5: a 200 answer to a HEAD request updates each stored GET response that could
    have been chosen for the request (same Vary values), or makes it stale (drops it)."""
    response_fields = exchange.response.headers.raw_items()
    for entry in proxy.store.variants(target.uri):
        if not vary_matches(entry.stored, request_fields):
            continue
        updated = update_from_head(
            entry.stored,
            response_fields,
            request_time=exchange.request_time,
            response_time=exchange.response_time,
        )
        if updated is None:
            await proxy.store.remove(entry)
        else:
            await proxy.store.update(entry, updated)
