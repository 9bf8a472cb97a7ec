"""The RFC 9111 policy as tables: one table per section, no sockets, virtual ``now``."""

from __future__ import annotations

import pytest

from netlab.proto.http_cache import CachePolicy, Outcome, invalidated_uris
from netlab.proto.http_cache_control import RequestDirectives
from netlab.proto.http_freshness import Heuristic, current_age
from netlab.proto.http_stored import StoredResponse, select, vary_key
from tests.proto.http_helpers import T0, date, fields, stored

POLICY = CachePolicy(shared=True, heuristic=Heuristic(fraction=0.1, max_lifetime=86400))
DAY = 86400.0

# --- Section 3: storing responses -------------------------------------------------------------

STORABLE = [
    # (method, request lines, status, response lines, None or a word of the reason)
    ("GET", [], 200, ["Cache-Control: max-age=60"], None),
    ("GET", [], 200, ["Expires: " + date(60)], None),
    ("GET", [], 200, ["Last-Modified: " + date(-DAY)], None),  # heuristically cacheable
    ("GET", [], 404, ["Last-Modified: " + date(-DAY)], None),
    ("GET", [], 302, ["Cache-Control: max-age=60"], None),  # explicit freshness: any final status
    ("GET", [], 302, ["Last-Modified: " + date(-DAY)], "heuristically"),
    ("GET", [], 200, [], "nothing to reuse"),  # no freshness, no validator
    ("GET", [], 200, ['ETag: "v1"'], None),  # stale at once, but can be revalidated
    ("HEAD", [], 200, ["Cache-Control: max-age=60"], "GET"),
    ("POST", [], 200, ["Cache-Control: max-age=60"], "GET"),
    ("GET", ["Cache-Control: no-store"], 200, ["Cache-Control: max-age=60"], "no-store"),  # 5.2.1.5
    ("GET", [], 200, ["Cache-Control: no-store, max-age=60"], "no-store"),  # 5.2.2.5
    ("GET", [], 200, ["Cache-Control: no-store, must-understand, max-age=60"], None),  # 5.2.2.3
    ("GET", [], 299, ["Cache-Control: no-store, must-understand, max-age=60"], "must-understand"),
    ("GET", [], 200, ["Cache-Control: private, max-age=60"], "private"),  # 5.2.2.7
    ("GET", [], 200, ['Cache-Control: private="Set-Cookie", max-age=60'], None),
    ("GET", ["Authorization: Basic eDp5"], 200, ["Cache-Control: max-age=60"], "Authorization"),  # 3.5
    ("GET", ["Authorization: Basic eDp5"], 200, ["Cache-Control: public, max-age=60"], None),
    ("GET", ["Authorization: Basic eDp5"], 200, ["Cache-Control: s-maxage=60"], None),
    ("GET", ["Authorization: Basic eDp5"], 200, ["Cache-Control: must-revalidate, max-age=60"], None),
    ("GET", [], 206, ["Cache-Control: max-age=60"], "206"),
    ("GET", [], 304, ["Cache-Control: max-age=60"], "304"),
    ("GET", [], 200, ["Cache-Control: max-age=60", "Vary: *"], "Vary"),  # 4.1
]


@pytest.mark.parametrize(("method", "request_lines", "status", "response_lines", "why"), STORABLE)
def test_section_3_storing(
    method: str, request_lines: list[str], status: int, response_lines: list[str], why: str | None
) -> None:
    req = fields(*request_lines)
    reason = POLICY.storable(
        method=method.encode(),
        request_fields=req,
        request_directives=RequestDirectives.from_fields(req),
        status=status,
        response_fields=fields(*response_lines),
    )
    if why is None:
        assert reason is None
    else:
        assert reason is not None
        assert why in reason


def test_section_3_1_stored_fields() -> None:
    s = POLICY.to_store(
        request_fields=fields("Accept-Encoding: gzip,  br", "Accept-Language: en"),
        status=200,
        reason=b"OK",
        response_fields=fields(
            'Cache-Control: max-age=60, private="X-Secret", no-cache="Set-Cookie"',
            "Connection: close, X-Hop",
            "X-Hop: 1",
            "Keep-Alive: timeout=5",
            "Transfer-Encoding: chunked",
            "X-Secret: s",
            "Set-Cookie: a=b",
            "Vary: Accept-Encoding, Cookie",
            "Content-Type: text/html",
        ),
        request_time=T0 - 1,
        response_time=T0,
    )
    names = [n.lower() for n, _ in s.headers]
    assert names == [b"cache-control", b"vary", b"content-type", b"date"]  # Date added (RFC 9110 6.6.1)
    assert s.vary_key == ((b"accept-encoding", b"gzip,br"), (b"cookie", None))


# --- Section 4.2.1: freshness lifetime ---------------------------------------------------------

LIFETIMES = [
    # (response lines, lifetime in seconds, heuristic?)
    (["Cache-Control: max-age=60"], 60, False),
    (["Cache-Control: max-age=60, s-maxage=10"], 10, False),  # s-maxage first, in a shared cache
    (["Cache-Control: max-age=60", "Expires: " + date(3600)], 60, False),  # max-age over Expires
    (["Expires: " + date(3600)], 3600, False),  # Expires minus Date
    (["Expires: " + date(-60)], 0, False),  # already expired
    (["Expires: 0"], 0, False),  # invalid Expires means expired (section 5.3)
    (["Cache-Control: max-age=abc"], 0, False),  # invalid freshness information: stale
    (["Last-Modified: " + date(-1000)], 100, True),  # 10% of the time since Last-Modified
    (["Last-Modified: " + date(-100 * DAY)], DAY, True),  # ... bounded
    (["Last-Modified: " + date(1000)], 0, True),  # modified "in the future": no heuristic credit
    ([], 0, False),
]


@pytest.mark.parametrize(("lines", "lifetime", "heuristic"), LIFETIMES)
def test_section_4_2_1_freshness_lifetime(lines: list[str], lifetime: float, heuristic: bool) -> None:
    assert POLICY.lifetime(stored(*lines)) == (lifetime, heuristic)


def test_section_4_2_1_a_private_cache_ignores_s_maxage() -> None:
    private_cache = CachePolicy(shared=False)
    assert private_cache.lifetime(stored("Cache-Control: max-age=60, s-maxage=10")) == (60, False)


def test_section_4_2_2_heuristic_only_for_heuristically_cacheable_or_public() -> None:
    assert POLICY.lifetime(stored("Last-Modified: " + date(-1000), status=302)) == (0, False)
    assert (
        POLICY.lifetime(stored("Last-Modified: " + date(-1000), "Cache-Control: public", status=302))[0]
        == 100
    )


def test_expires_is_measured_against_date_not_our_clock() -> None:
    # The origin's clock is an hour behind ours: its Date and Expires agree on 60 s of freshness.
    s = stored("Date: " + date(-3600), "Expires: " + date(-3540))
    assert POLICY.lifetime(s) == (60, False)


# --- Section 4.2.3: calculating age ------------------------------------------------------------

AGES = [
    # (Age field, Date offset, request_time, response_time, now, expected current_age)
    (0, 0, T0, T0, T0, 0),
    (0, 0, T0, T0, T0 + 30, 30),  # resident time
    (100, 0, T0, T0, T0 + 30, 130),  # Age from an upstream cache
    (0, -50, T0, T0, T0, 50),  # apparent age: our clock is ahead of the origin's Date
    (0, 50, T0, T0, T0, 0),  # a Date in the future gives no negative age
    (10, 0, T0 - 2, T0, T0, 12),  # response delay added to the Age value
    (10, -30, T0 - 2, T0, T0 + 1, 31),  # the larger of apparent and corrected age
]


@pytest.mark.parametrize(("age", "date_offset", "req_t", "resp_t", "now", "expected"), AGES)
def test_section_4_2_3_age(
    age: int, date_offset: float, req_t: float, resp_t: float, now: float, expected: float
) -> None:
    assert (
        current_age(
            age_value=age, date_value=T0 + date_offset, request_time=req_t, response_time=resp_t, now=now
        )
        == expected
    )
    s = stored(f"Age: {age}", "Date: " + date(date_offset), request_time=req_t, response_time=resp_t)
    assert POLICY.age(s, now) == expected


def test_section_5_1_invalid_or_listed_age() -> None:
    assert stored("Age: abc").age_value == 0
    assert stored("Age: 7, 9").age_value == 7


def test_missing_date_means_the_time_received() -> None:
    s = stored("Cache-Control: max-age=60", response_time=T0 + 5, with_date=False)
    assert s.date == T0 + 5


# --- Section 4 and 5.2.1: reusing a stored response, with request directives ------------------

MAX60 = stored("Cache-Control: max-age=60", 'ETag: "v1"')
DECISIONS = [
    # (request lines, stored response or None, now, outcome)
    ([], None, T0, Outcome.MISS),
    (["Cache-Control: only-if-cached"], None, T0, Outcome.GATEWAY_TIMEOUT),  # 5.2.1.7
    ([], MAX60, T0 + 59, Outcome.FRESH),  # section 4.2: fresh while lifetime > age
    ([], MAX60, T0 + 60, Outcome.REVALIDATE),
    (["Cache-Control: only-if-cached"], MAX60, T0 + 10, Outcome.FRESH),
    (["Cache-Control: only-if-cached"], MAX60, T0 + 61, Outcome.GATEWAY_TIMEOUT),
    (["Cache-Control: no-cache"], MAX60, T0 + 1, Outcome.REVALIDATE),  # 5.2.1.4
    (["Pragma: no-cache"], MAX60, T0 + 1, Outcome.REVALIDATE),  # 5.4
    (["Cache-Control: max-age=10"], MAX60, T0 + 10, Outcome.FRESH),  # 5.2.1.1
    (["Cache-Control: max-age=10"], MAX60, T0 + 11, Outcome.REVALIDATE),
    (["Cache-Control: max-age=0"], MAX60, T0 + 1, Outcome.REVALIDATE),  # a browser's reload
    (["Cache-Control: min-fresh=20"], MAX60, T0 + 40, Outcome.FRESH),  # 5.2.1.3
    (["Cache-Control: min-fresh=20"], MAX60, T0 + 41, Outcome.REVALIDATE),
    (["Cache-Control: max-stale"], MAX60, T0 + 10 * DAY, Outcome.STALE),  # 5.2.1.2
    (["Cache-Control: max-stale=30"], MAX60, T0 + 90, Outcome.STALE),
    (["Cache-Control: max-stale=30"], MAX60, T0 + 91, Outcome.REVALIDATE),
    ([], stored("Cache-Control: no-cache, max-age=60"), T0 + 1, Outcome.REVALIDATE),  # 5.2.2.4
    # must-revalidate / proxy-revalidate / s-maxage forbid stale reuse, even with max-stale (4.2.4).
    (
        ["Cache-Control: max-stale"],
        stored("Cache-Control: max-age=1, must-revalidate"),
        T0 + 5,
        Outcome.REVALIDATE,
    ),
    (
        ["Cache-Control: max-stale"],
        stored("Cache-Control: max-age=1, proxy-revalidate"),
        T0 + 5,
        Outcome.REVALIDATE,
    ),
    (["Cache-Control: max-stale"], stored("Cache-Control: s-maxage=1"), T0 + 5, Outcome.REVALIDATE),
    ([], stored("Cache-Control: max-age=1, must-revalidate"), T0 + 0.5, Outcome.FRESH),
    # RFC 5861 section 3: stale-while-revalidate.
    (
        [],
        stored("Cache-Control: max-age=60, stale-while-revalidate=30"),
        T0 + 90,
        Outcome.STALE_WHILE_REVALIDATE,
    ),
    ([], stored("Cache-Control: max-age=60, stale-while-revalidate=30"), T0 + 91, Outcome.REVALIDATE),
    (
        ["Cache-Control: max-age=0"],
        stored("Cache-Control: max-age=60, stale-while-revalidate=30"),
        T0 + 70,
        Outcome.REVALIDATE,
    ),
    # Heuristic freshness (4.2.2): 10% of 1000 s.
    ([], stored("Last-Modified: " + date(-1000)), T0 + 99, Outcome.FRESH),
    ([], stored("Last-Modified: " + date(-1000)), T0 + 100, Outcome.REVALIDATE),
    # Age from upstream counts (4.2.3).
    ([], stored("Cache-Control: max-age=60", "Age: 50"), T0 + 9, Outcome.FRESH),
    ([], stored("Cache-Control: max-age=60", "Age: 50"), T0 + 10, Outcome.REVALIDATE),
]


@pytest.mark.parametrize(("request_lines", "stored_response", "now", "outcome"), DECISIONS)
def test_section_4_reuse(
    request_lines: list[str], stored_response: StoredResponse | None, now: float, outcome: Outcome
) -> None:
    decision = POLICY.decide(RequestDirectives.from_fields(fields(*request_lines)), stored_response, now)
    assert decision.outcome is outcome, decision.reason


def test_decision_reports_age_and_lifetime() -> None:
    d = POLICY.decide(RequestDirectives(), MAX60, T0 + 12.5)
    assert (d.age, d.lifetime) == (12.5, 60)


STALE_IF_ERROR = [
    # (request lines, response lines, now, may serve stale after an error) -- RFC 5861 section 4
    ([], ["Cache-Control: max-age=60, stale-if-error=100"], T0 + 160, True),
    ([], ["Cache-Control: max-age=60, stale-if-error=100"], T0 + 161, False),
    (["Cache-Control: stale-if-error=10"], ["Cache-Control: max-age=60"], T0 + 70, True),
    (["Cache-Control: stale-if-error=10"], ["Cache-Control: max-age=60"], T0 + 71, False),
    ([], ["Cache-Control: max-age=60"], T0 + 61, False),
    ([], ["Cache-Control: max-age=60, stale-if-error=100, must-revalidate"], T0 + 61, False),  # 4.2.4
    ([], ["Cache-Control: s-maxage=60, stale-if-error=100"], T0 + 61, False),
]


@pytest.mark.parametrize(("request_lines", "response_lines", "now", "allowed"), STALE_IF_ERROR)
def test_rfc5861_stale_if_error(
    request_lines: list[str], response_lines: list[str], now: float, allowed: bool
) -> None:
    directives = RequestDirectives.from_fields(fields(*request_lines))
    assert POLICY.stale_on_error(directives, stored(*response_lines), now) is allowed


# --- Section 4.1: Vary --------------------------------------------------------------------------


def test_section_4_1_vary_selects_the_matching_variant() -> None:
    gzip_req = fields("Accept-Encoding: gzip, br")
    plain_req = fields("Accept-Language: en")
    response = fields("Vary: accept-encoding", "Cache-Control: max-age=60")
    gz = stored("Vary: accept-encoding", vary_key=vary_key(response, gzip_req) or ())
    plain = stored("Vary: accept-encoding", vary_key=vary_key(response, plain_req) or ())
    assert select(fields("Accept-Encoding: gzip,br"), [gz, plain]) is gz  # whitespace normalised
    assert select(fields("Accept-Encoding: gzip", "Accept-Encoding: br"), [gz, plain]) is gz  # lines combined
    assert select(fields(), [gz, plain]) is plain  # absent in both matches
    assert select(fields("Accept-Encoding: identity"), [gz, plain]) is None
    assert vary_key(fields("Vary: *"), gzip_req) is None


def test_section_4_1_most_recent_of_several_matches() -> None:
    old = stored("Date: " + date(-100))
    new = stored("Date: " + date(-10))
    assert select([], [old, new]) is new
    assert select([], [new, old]) is new


def test_stored_response_survives_json() -> None:
    s = stored("Cache-Control: max-age=60", "X-Bin: \xe9", vary_key=((b"accept", b"*/*"), (b"cookie", None)))
    assert StoredResponse.from_json(s.to_json()) == s


# --- Section 4.4: invalidation ------------------------------------------------------------------

INVALIDATIONS = [
    # (method, status, response lines, URIs invalidated)
    ("POST", 200, [], ["http://a.test/x"]),
    (
        "PUT",
        201,
        ["Location: /y", "Content-Location: http://a.test/z"],
        ["http://a.test/x", "http://a.test/y", "http://a.test/z"],
    ),
    ("DELETE", 204, ["Location: http://evil.test/x"], ["http://a.test/x"]),  # other origins untouched
    ("PATCH", 302, [], ["http://a.test/x"]),
    ("FROB", 200, [], ["http://a.test/x"]),  # unknown methods are unsafe
    ("POST", 404, [], []),  # only after a non-error status
    ("POST", 500, [], []),
    ("GET", 200, [], []),
    ("OPTIONS", 200, [], []),
]


@pytest.mark.parametrize(("method", "status", "lines", "uris"), INVALIDATIONS)
def test_section_4_4_invalidation(method: str, status: int, lines: list[str], uris: list[str]) -> None:
    assert invalidated_uris(method.encode(), status, "http://a.test/x", fields(*lines)) == uris
