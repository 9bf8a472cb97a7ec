"""Freshness lifetime and age: how long a stored response may be reused (RFC 9111 section 4.2).

Strategy: two pure functions of already-parsed values, so they can be checked against the RFC's
own formulas in a table.  A response is fresh while its freshness lifetime exceeds its current
age (section 4.2)::

    response_is_fresh = (freshness_lifetime > current_age)

Times are seconds since the epoch as floats; the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.proto.http_cache_control import ResponseDirectives

__all__ = ["HEURISTICALLY_CACHEABLE", "Heuristic", "current_age", "freshness_lifetime"]

#: Status codes "defined as heuristically cacheable" (RFC 9110 section 15.1), the only ones whose
#: responses may be given a lifetime without explicit freshness information.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True)
class Heuristic:
    """Heuristic freshness (section 4.2.2): a fraction of the time since Last-Modified, bounded.

    "a typical setting of this fraction might be 10%"; the bound keeps a file untouched for
    years from being reused for months without a check.
    """

    fraction: float = 0.1
    max_lifetime: float = 86400.0  # seconds


def freshness_lifetime(
    directives: ResponseDirectives,
    *,
    status: int,
    date: float,
    expires: float | None,
    expires_present: bool,
    last_modified: float | None,
    shared: bool,
    heuristic: Heuristic,
) -> tuple[float, bool]:
    """The freshness lifetime in seconds and whether it is heuristic (section 4.2.1).

    Args:
        date: the Date the response carried (or when it was received, if it had none).
        expires: the parsed Expires value; None if absent or invalid.
        expires_present: whether an Expires field was there at all; an invalid one (such as
            "0") "represents a time in the past (i.e., already expired)" (section 5.3).
        last_modified: the parsed Last-Modified value, for the heuristic.
        shared: whether this cache is shared (a proxy is), so that s-maxage applies.
    """
    # The first match in this order wins.
    if shared and directives.s_maxage is not None:
        return float(directives.s_maxage), False
    if directives.max_age is not None:
        return float(directives.max_age), False
    if expires_present:
        return (max(0.0, expires - date) if expires is not None else 0.0), False
    # Section 4.2.2: no explicit expiration time.  A heuristic is allowed only for heuristically
    # cacheable status codes or responses marked public (section 3).
    if last_modified is not None and (status in HEURISTICALLY_CACHEABLE or directives.public):
        lifetime = min(heuristic.fraction * max(0.0, date - last_modified), heuristic.max_lifetime)
        return lifetime, True
    return 0.0, False


def current_age(
    *,
    age_value: int,
    date_value: float,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """The current age of a stored response, exactly as section 4.2.3 computes it.

    Args:
        age_value: the Age field of the response (0 if absent or invalid, section 5.1).
        date_value: its Date field.
        request_time: when the request that produced it was sent (our clock).
        response_time: when the response was received (our clock).
        now: the current time (our clock).
    """
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - response_time
    return corrected_initial_age + resident_time
