"""Validation: conditional requests in both directions (RFC 9111 section 4.3, RFC 9110 section 13).

Strategy: three pure steps around a stored response.

* Towards the origin: :func:`revalidation_fields` builds the conditional request that asks "has
  it changed?" (section 4.3.1), and :func:`freshen` applies a 304 answer to the stored response
  (sections 4.3.4 and 3.2); :func:`update_from_head` does the same with a 200 answer to HEAD
  (section 4.3.5).
* Towards the client: :func:`client_wants_304` evaluates a client's own If-None-Match and
  If-Modified-Since against the stored response (section 4.3.2) so the cache can answer 304
  without asking anyone, and :func:`not_modified_fields` says what that 304 carries
  (RFC 9110 section 15.4.5).
"""

from __future__ import annotations

from netlab.proto.http_fields import (
    Fields,
    field_values,
    first_value,
    format_http_date,
    parse_entity_tags,
    parse_http_date,
)
from netlab.proto.http_forwarding import end_to_end_fields
from netlab.proto.http_stored import StoredResponse

__all__ = [
    "CLIENT_CONDITIONALS",
    "client_wants_304",
    "freshen",
    "not_modified_fields",
    "revalidation_fields",
    "update_from_head",
]

#: A client's validators; they are replaced by the cache's own when it revalidates.
CLIENT_CONDITIONALS = frozenset({b"if-none-match", b"if-modified-since"})

#: Preconditions "not applicable to a cache" (section 4.3.2), and range requests, which this cache
#: does not answer: such requests are forwarded untouched.
ORIGIN_ONLY_CONDITIONALS = frozenset({b"if-match", b"if-unmodified-since", b"if-range", b"range"})

# Section 3.2: fields a 304 must not update.  Content-Length describes the stored body, not the
# 304; Content-Encoding and Content-Range describe how the stored body was received; the stored
# response "depends upon" Vary (its secondary key).
_NOT_UPDATED = frozenset({b"content-length", b"content-encoding", b"content-range", b"vary"})

# RFC 9110 section 15.4.5: what a 304 carries when the 200 would have carried it.
_IN_304 = frozenset({b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"})


def revalidation_fields(stored: StoredResponse) -> list[tuple[bytes, bytes]]:
    """Validators of ``stored`` for a conditional GET (section 4.3.1).

    The entity tag goes in If-None-Match; the Last-Modified date in If-Modified-Since.  An
    origin evaluates If-None-Match first and ignores the other (RFC 9110 section 13.2.2).
    """
    fields: list[tuple[bytes, bytes]] = []
    if stored.etag is not None:
        fields.append((b"If-None-Match", stored.etag.to_bytes()))
    last_modified = first_value(stored.headers, b"last-modified")
    if last_modified is not None and stored.last_modified is not None:
        fields.append((b"If-Modified-Since", last_modified))
    return fields


def freshen(
    stored: StoredResponse, fields_304: Fields, *, request_time: float, response_time: float
) -> StoredResponse | None:
    """``stored`` updated by a 304 (section 4.3.4), or None if the 304 is about another response.

    Selection: a validator in the 304 must match the stored one (strong ETag strongly, weak ETag
    weakly, else equal Last-Modified).  A 304 carrying no validator at all is taken to be about
    ``stored``, the only response this cache asked about.  The update replaces every stored field
    the 304 carries, except those in section 3.2's exceptions.
    """
    new_tags = parse_entity_tags(field_values(fields_304, b"etag")) or []
    new_etag = new_tags[0] if new_tags else None
    new_last_modified = parse_http_date(first_value(fields_304, b"last-modified"), now=response_time)
    if new_etag is not None:
        if stored.etag is None:
            return None
        match = stored.etag.weak_match if new_etag.weak else stored.etag.strong_match
        if not match(new_etag):
            return None
    elif new_last_modified is not None and stored.last_modified != new_last_modified:
        return None
    return _updated(stored, fields_304, request_time=request_time, response_time=response_time)


def update_from_head(
    stored: StoredResponse, head_fields: Fields, *, request_time: float, response_time: float
) -> StoredResponse | None:
    """``stored`` (a GET response) updated by a 200 answer to HEAD (section 4.3.5), or None if
    the two do not match, and the stored response is to be considered stale.

    They match when their validators (ETag, Last-Modified) are the same and, if the HEAD
    response has a Content-Length, so is that.  A pair with no validator at all is not taken to
    match: nothing would then tell that the stored body is the one the HEAD response describes.
    """
    new_tags = parse_entity_tags(field_values(head_fields, b"etag")) or []
    new_etag = new_tags[0] if new_tags else None
    new_last_modified = parse_http_date(first_value(head_fields, b"last-modified"), now=response_time)
    if new_etag is None and new_last_modified is None:
        return None
    if new_etag != stored.etag or new_last_modified != stored.last_modified:
        return None
    length = first_value(head_fields, b"content-length")
    if length is not None and length.strip() != str(stored.content_length).encode():
        return None
    return _updated(stored, head_fields, request_time=request_time, response_time=response_time)


def _updated(
    stored: StoredResponse, fields: Fields, *, request_time: float, response_time: float
) -> StoredResponse:
    """``stored`` with the fields of a newer response about it (section 3.2)."""
    updates = [(n, v) for n, v in end_to_end_fields(fields) if n.lower() not in _NOT_UPDATED]
    replaced = {n.lower() for n, _ in updates}
    headers = [(n, v) for n, v in stored.headers if n.lower() not in replaced]
    headers += updates
    if first_value(fields, b"date") is None:
        # The stored Date described the old response; the newer one is what was just received.
        headers = [(n, v) for n, v in headers if n.lower() != b"date"]
        headers.append((b"Date", format_http_date(response_time)))
    if first_value(fields, b"age") is None:
        headers = [(n, v) for n, v in headers if n.lower() != b"age"]
    return stored.with_headers(headers, request_time=request_time, response_time=response_time)


def client_wants_304(method: bytes, request_fields: Fields, stored: StoredResponse) -> bool:
    """Whether the client's own validators say its copy is current (section 4.3.2).

    If-None-Match takes precedence and is compared weakly (RFC 9110 section 13.1.2); only without
    it is If-Modified-Since used, against Last-Modified or, lacking that, the stored Date.
    """
    if method not in (b"GET", b"HEAD"):
        return False
    inm = field_values(request_fields, b"if-none-match")
    if inm:
        tags = parse_entity_tags(inm)
        if tags is None:  # "*": any current representation matches
            return True
        return stored.etag is not None and any(stored.etag.weak_match(t) for t in tags)
    ims_values = field_values(request_fields, b"if-modified-since")
    # RFC 9110 section 13.1.3: ignore it unless it is exactly one valid HTTP-date.
    since = parse_http_date(ims_values[0]) if len(ims_values) == 1 else None
    if since is None:
        return False
    modified = stored.last_modified if stored.last_modified is not None else stored.date
    return modified <= since


def not_modified_fields(stored: StoredResponse) -> list[tuple[bytes, bytes]]:
    """The stored fields a 304 answer carries (RFC 9110 section 15.4.5)."""
    return [(n, v) for n, v in stored.headers if n.lower() in _IN_304]
