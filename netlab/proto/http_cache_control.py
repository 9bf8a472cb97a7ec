"""Cache-Control directives (RFC 9111 section 5.2, RFC 5861), parsed once into typed records.

Strategy: :func:`parse_directives` turns every Cache-Control field line into an ordered mapping
``name -> argument`` following the grammar of section 5.2::

    Cache-Control   = #cache-directive
    cache-directive = token [ "=" ( token / quoted-string ) ]

Names are case-insensitive; the first occurrence of a directive wins (section 4.2.1 allows
"either the first occurrence ... or the response should be considered stale").  The typed
records then read the directives a cache acts on.  A delta-seconds argument that is not a valid
number makes the directive count as 0 seconds, which is how section 4.2.1 encourages caches to
treat "invalid freshness information": as stale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from netlab.proto.http_fields import Fields, field_values, parse_delta_seconds, split_list

__all__ = ["NO_REQUEST_DIRECTIVES", "RequestDirectives", "ResponseDirectives", "parse_directives"]

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_directives(values: Iterable[bytes]) -> dict[str, str | None]:
    """Cache-Control field values as ``{directive: argument or None}``, first occurrence wins.

    Members that are not ``token [= token / quoted-string]`` are ignored, as an unrecognised
    directive must be (section 5.2.3).
    """
    directives: dict[str, str | None] = {}
    for member in split_list(values):
        name, eq, arg = member.partition(b"=")
        name = name.strip()
        if not name or not _TCHAR.issuperset(name):
            continue
        argument: str | None = None
        if eq:
            argument = _unquote(arg.strip())
            if argument is None:
                continue
        directives.setdefault(name.decode("ascii").lower(), argument)
    return directives


def _unquote(arg: bytes) -> str | None:
    """The argument as text: a token as is, a quoted-string without quotes and escapes."""
    if arg.startswith(b'"'):
        if len(arg) < 2 or not arg.endswith(b'"'):
            return None
        out = bytearray()
        escaped = False
        for byte in arg[1:-1]:
            if escaped or byte != ord("\\"):
                out.append(byte)
                escaped = False
            else:
                escaped = True
        return out.decode("latin-1")
    if not arg or not _TCHAR.issuperset(arg):
        return None
    return arg.decode("ascii")


def _seconds(directives: dict[str, str | None], name: str) -> int | None:
    """The delta-seconds argument of ``name``; 0 if present but unusable; None if absent."""
    if name not in directives:
        return None
    value = parse_delta_seconds(directives[name])
    return 0 if value is None else value


def _field_names(argument: str | None) -> frozenset[bytes]:
    """The field names of a qualified ``no-cache="..."`` or ``private="..."`` (lower case)."""
    if argument is None:
        return frozenset()
    return frozenset(m.lower() for m in split_list([argument.encode("latin-1")]))


@dataclass(frozen=True)
class ResponseDirectives:
    """What a response's Cache-Control asks of caches (RFC 9111 section 5.2.2, RFC 5861)."""

    max_age: int | None = None  # 5.2.2.1
    s_maxage: int | None = None  # 5.2.2.10: shared caches only; implies proxy-revalidate
    no_cache: bool = False  # 5.2.2.4, unqualified: revalidate before every reuse
    no_cache_fields: frozenset[bytes] = frozenset()  # 5.2.2.4, qualified form
    no_store: bool = False  # 5.2.2.5
    private: bool = False  # 5.2.2.7, unqualified: a shared cache must not store it
    private_fields: frozenset[bytes] = frozenset()  # 5.2.2.7, qualified form
    public: bool = False  # 5.2.2.9
    must_revalidate: bool = False  # 5.2.2.2
    proxy_revalidate: bool = False  # 5.2.2.8
    must_understand: bool = False  # 5.2.2.3
    stale_while_revalidate: int | None = None  # RFC 5861 section 3
    stale_if_error: int | None = None  # RFC 5861 section 4

    @classmethod
    def from_fields(cls, fields: Fields) -> ResponseDirectives:
        d = parse_directives(field_values(fields, b"cache-control"))
        if not d:
            return _NO_RESPONSE_DIRECTIVES
        return cls(
            max_age=_seconds(d, "max-age"),
            s_maxage=_seconds(d, "s-maxage"),
            no_cache="no-cache" in d and d["no-cache"] is None,
            no_cache_fields=_field_names(d.get("no-cache")),
            no_store="no-store" in d,
            private="private" in d and d["private"] is None,
            private_fields=_field_names(d.get("private")),
            public="public" in d,
            must_revalidate="must-revalidate" in d,
            proxy_revalidate="proxy-revalidate" in d,
            must_understand="must-understand" in d,
            stale_while_revalidate=_seconds(d, "stale-while-revalidate"),
            stale_if_error=_seconds(d, "stale-if-error"),
        )


_NO_RESPONSE_DIRECTIVES = ResponseDirectives()


@dataclass(frozen=True)
class RequestDirectives:
    """What a client's Cache-Control asks of caches (RFC 9111 section 5.2.1, RFC 5861)."""

    max_age: int | None = None  # 5.2.1.1: the oldest response the client accepts
    max_stale: float | None = None  # 5.2.1.2: math.inf when given without a value
    min_fresh: int | None = None  # 5.2.1.3
    no_cache: bool = False  # 5.2.1.4: validate with the origin first
    no_store: bool = False  # 5.2.1.5
    only_if_cached: bool = False  # 5.2.1.7: never go to the origin
    stale_if_error: int | None = None  # RFC 5861 section 4

    @classmethod
    def from_fields(cls, fields: Fields) -> RequestDirectives:
        d = parse_directives(field_values(fields, b"cache-control"))
        if not d:
            # Section 5.4: Pragma is deprecated, but a request without Cache-Control that says
            # "Pragma: no-cache" (HTTP/1.0 clients, browsers' reload) means no-cache.
            if any(m.lower() == b"no-cache" for m in split_list(field_values(fields, b"pragma"))):
                return _PRAGMA_NO_CACHE
            return NO_REQUEST_DIRECTIVES
        max_stale: float | None = None
        if "max-stale" in d:
            # "If no value is assigned to max-stale, then the client will accept a stale
            # response of any age" (5.2.1.2).
            max_stale = math.inf if d["max-stale"] is None else _seconds(d, "max-stale")
        return cls(
            max_age=_seconds(d, "max-age"),
            max_stale=max_stale,
            min_fresh=_seconds(d, "min-fresh"),
            no_cache="no-cache" in d,
            no_store="no-store" in d,
            only_if_cached="only-if-cached" in d,
            stale_if_error=_seconds(d, "stale-if-error"),
        )


NO_REQUEST_DIRECTIVES = RequestDirectives()  # what a request without Cache-Control or Pragma asks
_PRAGMA_NO_CACHE = RequestDirectives(no_cache=True)
