"""A stored response and its secondary key: what the cache keeps, and which copy answers (RFC 9111).

Strategy: :class:`StoredResponse` is immutable; the values the policy reads over and over (its
Cache-Control directives, Date, Age, Expires, validators) are parsed once, on first use.  Vary
(section 4.1) is handled by keeping, with each stored response, the normalised values that the
request which produced it had for every field Vary names: :func:`select` compares those with the
presented request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from netlab.proto.http_cache_control import ResponseDirectives
from netlab.proto.http_fields import (
    EntityTag,
    Fields,
    field_values,
    first_value,
    parse_delta_seconds,
    parse_entity_tags,
    parse_http_date,
    split_list,
)

__all__ = ["StoredResponse", "VaryKey", "select", "vary_key", "vary_matches", "vary_names"]


@dataclass(frozen=True)
class StoredResponse:
    """A response as the cache keeps it: status, end-to-end fields and the exchange's times.

    ``headers`` carry a Date (added on receipt if the origin sent none, RFC 9110 section 6.6.1)
    and a Content-Length equal to the stored body.  ``vary_key`` holds, for every field the
    response's Vary names, the normalised value it had in the request that produced the response
    (None if absent): the secondary cache key of section 4.1.
    """

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    request_time: float
    response_time: float
    vary_key: tuple[tuple[bytes, bytes | None], ...] = ()

    @cached_property
    def directives(self) -> ResponseDirectives:
        return ResponseDirectives.from_fields(self.headers)

    @cached_property
    def date(self) -> float:
        parsed = parse_http_date(first_value(self.headers, b"date"), now=self.response_time)
        return self.response_time if parsed is None else parsed

    @cached_property
    def age_value(self) -> int:
        # Section 5.1: use the first member of a list-valued Age; ignore an invalid one.
        members = split_list(field_values(self.headers, b"age"))
        return (parse_delta_seconds(members[0]) or 0) if members else 0

    @cached_property
    def expires(self) -> tuple[bool, float | None]:
        """Whether an Expires field is present, and its value if it is a valid date."""
        value = first_value(self.headers, b"expires")
        return value is not None, parse_http_date(value, now=self.response_time)

    @cached_property
    def etag(self) -> EntityTag | None:
        tags = parse_entity_tags(field_values(self.headers, b"etag"))
        return tags[0] if tags else None

    @cached_property
    def last_modified(self) -> float | None:
        return parse_http_date(first_value(self.headers, b"last-modified"), now=self.response_time)

    @cached_property
    def content_length(self) -> int:
        return parse_delta_seconds(first_value(self.headers, b"content-length")) or 0

    @cached_property
    def content_type(self) -> str:
        value = first_value(self.headers, b"content-type")
        return value.decode("latin-1").split(";")[0].strip() if value else ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (header bytes as latin-1 text, the one lossless mapping)."""
        return {
            "status": self.status,
            "reason": self.reason.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "request_time": self.request_time,
            "response_time": self.response_time,
            "vary_key": [[n.decode("latin-1"), _text(v)] for n, v in self.vary_key],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredResponse:
        return cls(
            status=int(data["status"]),
            reason=data["reason"].encode("latin-1"),
            headers=tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in data["headers"]),
            request_time=float(data["request_time"]),
            response_time=float(data["response_time"]),
            vary_key=tuple(
                (n.encode("latin-1"), None if v is None else v.encode("latin-1")) for n, v in data["vary_key"]
            ),
        )

    def with_headers(self, headers: Fields, *, request_time: float, response_time: float) -> StoredResponse:
        return replace(self, headers=tuple(headers), request_time=request_time, response_time=response_time)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _normalized(fields: Fields, name: bytes) -> bytes | None:
    """A request field's value for Vary matching: lines combined, list whitespace removed.

    Section 4.1 lets a cache normalise both values "in a way that is known to have identical
    semantics": combining field lines and dropping optional whitespace around commas qualify.
    """
    values = field_values(fields, name)
    if not values:
        return None
    return b",".join(split_list(values))


def vary_names(response_fields: Fields) -> list[bytes] | None:
    """The field names a response's Vary lists (lower case), or None for ``Vary: *``."""
    names = [n.lower() for n in split_list(field_values(response_fields, b"vary"))]
    return None if b"*" in names else names


VaryKey = tuple[tuple[bytes, bytes | None], ...]


def vary_key(response_fields: Fields, request_fields: Fields) -> VaryKey | None:
    """The secondary key (section 4.1) for storing a response to a request; None if Vary is ``*``."""
    names = vary_names(response_fields)
    if names is None:
        return None
    return tuple((name, _normalized(request_fields, name)) for name in dict.fromkeys(names))


def vary_matches(stored: StoredResponse, request_fields: Fields) -> bool:
    """Whether the presented request has the values ``stored``'s request had for Vary's fields."""
    return all(_normalized(request_fields, name) == value for name, value in stored.vary_key)


def select(request_fields: Fields, candidates: list[StoredResponse]) -> StoredResponse | None:
    """The stored response that may answer the request (section 4.1), or None.

    A candidate matches when every field its Vary named has the same normalised value in the
    presented request as in the original one.  Of several matches "the most recent response (as
    determined by the Date header field) is used".
    """
    best: StoredResponse | None = None
    for stored in candidates:
        if vary_matches(stored, request_fields) and (
            best is None or (stored.date, stored.response_time) > (best.date, best.response_time)
        ):
            best = stored
    return best
