"""The two ways the cache answers a GET or HEAD: from the store, or from the origin while storing.

Strategy: :func:`send_stored` answers with a stored response (its head prepared once, its body
from the memory tier or streamed from disk; or a 304 when the client's own validators match,
RFC 9111 section 4.3.2).  :func:`store_and_relay` relays an origin's response and, if the policy
allows (section 3), writes it to the store on the way (a tee), committing it once whole.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import TYPE_CHECKING

import h11

from netlab.proto.http_cache_control import RequestDirectives
from netlab.proto.http_fields import Fields, first_value, has_field, parse_delta_seconds
from netlab.proto.http_forwarding import Target
from netlab.proto.http_stored import vary_matches
from netlab.proto.http_validation import client_wants_304, not_modified_fields
from netlab.store.http_generation import Generation
from netlab.store.http_store import BodyGone, Entry
from servers.proxy.accesslog import Transaction
from servers.proxy.client import ClientConnection
from servers.proxy.forward import Exchange

if TYPE_CHECKING:
    from servers.proxy.handler import Proxy

__all__ = ["send_stored", "store_and_relay"]

log = logging.getLogger(__name__)


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


async def store_and_relay(
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
    superseded = [e for e in entries if vary_matches(e.stored, fields)]
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
