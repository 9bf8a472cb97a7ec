"""The RFC 9111 cache policy of a shared HTTP cache, as pure decisions over headers and ``now``.

Strategy: the proxy asks this module four questions and does whatever it answers; the module never
sees a socket, a file or a clock.

1. *May this response be stored?* :meth:`CachePolicy.storable` (section 3), and if so
   :meth:`CachePolicy.to_store` makes the :class:`~netlab.proto.http_stored.StoredResponse`
   (section 3.1: which fields are kept, and the secondary key that Vary calls for, section 4.1).
2. *Which stored response answers this request?* :func:`netlab.proto.http_stored.select`
   (section 4.1, Vary).
3. *May it be reused, and how?* :meth:`CachePolicy.decide` (sections 4.2 and 4.2.4, the request
   directives of 5.2.1, and RFC 5861's stale-while-revalidate) gives an :class:`Outcome`:
   reuse it, reuse it stale, revalidate first, fetch, or answer 504.
4. *What does an unsafe request invalidate?* :func:`invalidated_uris` (section 4.4).

Validation itself (conditional requests, 304 updates, clients' own conditionals) lives in
:mod:`netlab.proto.http_validation`.  Times are seconds since the epoch; ``now`` is passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from netlab.proto.http_cache_control import RequestDirectives, ResponseDirectives
from netlab.proto.http_fields import Fields, first_value, format_http_date, has_field
from netlab.proto.http_forwarding import end_to_end_fields
from netlab.proto.http_freshness import HEURISTICALLY_CACHEABLE, Heuristic, current_age, freshness_lifetime
from netlab.proto.http_stored import StoredResponse, vary_key, vary_names

__all__ = [
    "CachePolicy",
    "Decision",
    "Outcome",
    "invalidated_uris",
    "is_error_status",
]

_LIFETIME_MEMO = 4096  # stored responses whose lifetime is remembered

#: Methods that are safe (RFC 9110 section 9.2.1); every other method invalidates (section 4.4).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})

#: Final status codes whose caching semantics this cache implements (for must-understand,
#: section 5.2.2.3).  206 is absent: this cache does not combine or serve partial content.
UNDERSTOOD_STATUS = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308}
    | {*range(400, 418), 421, 422, 426}
    | {500, 501, 502, 503, 504, 505}
)


def is_error_status(status: int) -> bool:
    """The statuses that count as an error for stale-if-error (RFC 5861 section 4)."""
    return status in (500, 502, 503, 504)


class Outcome(enum.Enum):
    """What to do with a request, given what the cache holds."""

    MISS = "miss"  # nothing stored that could answer: forward the request
    FRESH = "fresh"  # reuse the stored response as it is
    STALE = "stale"  # reuse it although stale: the client allowed it (max-stale, 5.2.1.2)
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # reuse it, revalidate in the background
    REVALIDATE = "revalidate"  # send a conditional request first (section 4.3)
    GATEWAY_TIMEOUT = "only-if-cached"  # the client forbade going to the origin (5.2.1.7): 504


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    age: float = 0.0  # current age of the stored response, seconds
    lifetime: float = 0.0  # its freshness lifetime, seconds
    reason: str = ""  # why, in words, for logs and tests


@dataclass(frozen=True)
class CachePolicy:
    """The policy of one cache.  A proxy is a shared cache (section 1: "shared cache")."""

    shared: bool = True
    heuristic: Heuristic = field(default_factory=Heuristic)
    # Lifetimes already computed, by stored response (which is immutable): a hot response's is
    # read on every hit.  The memo holds the response itself, so its id cannot be reused.
    _lifetimes: dict[int, tuple[StoredResponse, tuple[float, bool]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def storable(
        self,
        *,
        method: bytes,
        request_fields: Fields,
        request_directives: RequestDirectives,
        status: int,
        response_fields: Fields,
    ) -> str | None:
        """Why the response must not be stored (section 3), or None if it may be."""
        rd = ResponseDirectives.from_fields(response_fields)
        if method != b"GET":
            # Only GET responses are stored; HEAD is answered from them (RFC 9110 section 9.3.2).
            return "method is not GET"
        if request_directives.no_store:
            return "request says no-store"  # 5.2.1.5
        if status < 200 or status in (206, 304):
            return f"status {status} is not stored"  # not final, or partial, or an update
        if rd.must_understand:
            # 5.2.2.3: store only if we understand the status code, and then no-store is overridden.
            if status not in UNDERSTOOD_STATUS:
                return "must-understand with a status code this cache does not implement"
        elif rd.no_store:
            return "response says no-store"  # 5.2.2.5
        if self.shared and rd.private:
            return "private"  # 5.2.2.7
        if (
            self.shared
            and has_field(request_fields, b"authorization")
            and not (rd.public or rd.s_maxage is not None or rd.must_revalidate)
        ):
            return "request carried Authorization"  # section 3.5
        if vary_names(response_fields) is None:
            return "Vary: * never matches"  # section 4.1
        explicit = (
            rd.public
            or rd.max_age is not None
            or (self.shared and rd.s_maxage is not None)
            or has_field(response_fields, b"expires")
        )
        if not explicit and status not in HEURISTICALLY_CACHEABLE:
            return "no explicit freshness and not heuristically cacheable"
        # A response that is stale on arrival and has no validator could only ever be fetched
        # again in full: storing it would only cost space (a cache MAY decline to store).
        if (
            not explicit
            and not has_field(response_fields, b"last-modified")
            and not has_field(response_fields, b"etag")
        ):
            return "nothing to reuse: no freshness and no validator"
        return None

    def to_store(
        self,
        *,
        request_fields: Fields,
        status: int,
        reason: bytes,
        response_fields: Fields,
        request_time: float,
        response_time: float,
    ) -> StoredResponse:
        """The response as it is stored (section 3.1), before its body length is known."""
        rd = ResponseDirectives.from_fields(response_fields)
        # A shared cache may store a response with qualified private="..." only without those
        # fields (5.2.2.7); fields named by no-cache="..." must not be reused without
        # revalidation (5.2.2.4), so they are not kept either.
        dropped = (rd.private_fields if self.shared else frozenset()) | rd.no_cache_fields
        kept = [(n, v) for n, v in end_to_end_fields(response_fields) if n.lower() not in dropped]
        if not has_field(kept, b"date"):
            kept.append((b"Date", format_http_date(response_time)))
        key = vary_key(response_fields, request_fields)
        return StoredResponse(
            status=status,
            reason=reason,
            headers=tuple(kept),
            request_time=request_time,
            response_time=response_time,
            vary_key=key or (),
        )

    def lifetime(self, stored: StoredResponse) -> tuple[float, bool]:
        """The freshness lifetime of ``stored`` (section 4.2.1) and whether it is heuristic."""
        memo = self._lifetimes.get(id(stored))
        if memo is not None and memo[0] is stored:
            return memo[1]
        if len(self._lifetimes) >= _LIFETIME_MEMO:
            self._lifetimes.clear()
        lifetime = self._compute_lifetime(stored)
        self._lifetimes[id(stored)] = (stored, lifetime)
        return lifetime

    def _compute_lifetime(self, stored: StoredResponse) -> tuple[float, bool]:
        expires_present, expires = stored.expires
        return freshness_lifetime(
            stored.directives,
            status=stored.status,
            date=stored.date,
            expires=expires,
            expires_present=expires_present,
            last_modified=stored.last_modified,
            shared=self.shared,
            heuristic=self.heuristic,
        )

    def age(self, stored: StoredResponse, now: float) -> float:
        """The current age of ``stored`` (section 4.2.3)."""
        return current_age(
            age_value=stored.age_value,
            date_value=stored.date,
            request_time=stored.request_time,
            response_time=stored.response_time,
            now=now,
        )

    def decide(self, request: RequestDirectives, stored: StoredResponse | None, now: float) -> Decision:
        """How to answer a GET or HEAD request given the selected stored response (section 4)."""
        if stored is None:
            if request.only_if_cached:
                return Decision(Outcome.GATEWAY_TIMEOUT, reason="only-if-cached and nothing stored")
            return Decision(Outcome.MISS, reason="nothing stored")
        rd = stored.directives
        lifetime, _heuristic = self.lifetime(stored)
        age = self.age(stored, now)
        staleness = age - lifetime

        outcome: Outcome
        if rd.no_cache:
            outcome, why = Outcome.REVALIDATE, "response says no-cache"  # 5.2.2.4
        elif request.no_cache:
            outcome, why = Outcome.REVALIDATE, "request says no-cache"  # 5.2.1.4
        elif request.max_age is not None and age > request.max_age:
            outcome, why = Outcome.REVALIDATE, "older than the request's max-age"  # 5.2.1.1
        elif request.min_fresh is not None and lifetime - age < request.min_fresh:
            outcome, why = Outcome.REVALIDATE, "fresh for less than min-fresh"  # 5.2.1.3
        elif lifetime > age:
            outcome, why = Outcome.FRESH, "fresh"  # section 4.2
        elif self._must_revalidate(rd):
            # 5.2.2.2, 5.2.2.8, 5.2.2.10: stale responses must not be reused without validation,
            # not even when the client says max-stale (section 4.2.4).
            outcome, why = Outcome.REVALIDATE, "stale and must be revalidated"
        elif request.max_stale is not None and staleness <= request.max_stale:
            outcome, why = Outcome.STALE, "stale within the request's max-stale"  # 5.2.1.2
        elif rd.stale_while_revalidate is not None and staleness <= rd.stale_while_revalidate:
            outcome, why = Outcome.STALE_WHILE_REVALIDATE, "stale within stale-while-revalidate"
        else:
            outcome, why = Outcome.REVALIDATE, "stale"
        if outcome is Outcome.REVALIDATE and request.only_if_cached:
            return Decision(Outcome.GATEWAY_TIMEOUT, age, lifetime, "only-if-cached but " + why)
        return Decision(outcome, age, lifetime, why)

    def _must_revalidate(self, rd: ResponseDirectives) -> bool:
        """Directives that forbid reusing the response stale (section 4.2.4)."""
        shared_only = self.shared and (rd.proxy_revalidate or rd.s_maxage is not None)
        return rd.no_cache or rd.must_revalidate or shared_only

    def stale_on_error(self, request: RequestDirectives, stored: StoredResponse, now: float) -> bool:
        """Whether ``stored`` may answer when revalidation failed (RFC 5861 section 4).

        Section 4.2.4 of RFC 9111 forbids it whenever a directive demands revalidation.
        """
        if self._must_revalidate(stored.directives):
            return False
        rd = stored.directives
        lifetime, _ = self.lifetime(stored)
        staleness = max(0.0, self.age(stored, now) - lifetime)
        windows = [rd.stale_if_error, request.stale_if_error, request.max_stale]
        return any(w is not None and staleness <= w for w in windows)


def invalidated_uris(method: bytes, status: int, target_uri: str, response_fields: Fields) -> list[str]:
    """The URIs whose stored responses an unsafe request invalidates (section 4.4).

    After a non-error (2xx or 3xx) response to an unsafe method: the target URI, and the URIs
    in Location and Content-Location when they have the same origin (an origin must not be able
    to invalidate another's responses).
    """
    if method in SAFE_METHODS or not 200 <= status < 400:
        return []
    uris = [target_uri]
    origin = _origin(target_uri)
    for name in (b"location", b"content-location"):
        value = first_value(response_fields, name)
        if value is None:
            continue
        try:
            uri = urljoin(target_uri, value.decode("latin-1").strip())
        except ValueError:
            continue
        if _origin(uri) == origin and uri not in uris:
            uris.append(uri)
    return uris


def _origin(uri: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(uri)
        port = parts.port or (80 if parts.scheme == "http" else 443 if parts.scheme == "https" else None)
        return (parts.scheme.lower(), (parts.hostname or "").lower(), port)
    except ValueError:
        return ("", "", None)
