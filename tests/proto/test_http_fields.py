"""Field-value grammars: HTTP-dates, lists, entity tags, delta-seconds, Cache-Control."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.proto.http_cache_control import RequestDirectives, ResponseDirectives, parse_directives
from netlab.proto.http_fields import (
    DELTA_SECONDS_MAX,
    EntityTag,
    format_http_date,
    parse_delta_seconds,
    parse_entity_tags,
    parse_http_date,
    split_list,
)
from tests.proto.http_helpers import fields

EPOCH_1994 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime() format
    ],
)
def test_the_three_http_date_formats_of_rfc9110_5_6_7(text: str) -> None:
    assert parse_http_date(text) == EPOCH_1994
    assert parse_http_date(text.encode()) == EPOCH_1994


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "-1",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
    ],
)
def test_invalid_dates_are_none(text: str) -> None:
    assert parse_http_date(text) is None


def test_rfc850_two_digit_year_is_at_most_50_years_ahead() -> None:
    now_2030 = parse_http_date("Tue, 01 Jan 2030 00:00:00 GMT")
    assert now_2030 is not None
    assert parse_http_date("Monday, 01-Jan-79 00:00:00 GMT", now=now_2030) == parse_http_date(
        "Mon, 01 Jan 2079 00:00:00 GMT"
    )
    assert parse_http_date("Monday, 01-Jan-85 00:00:00 GMT", now=now_2030) == parse_http_date(
        "Tue, 01 Jan 1985 00:00:00 GMT"
    )


@given(st.integers(0, 2**33))
def test_format_then_parse_round_trips(seconds: int) -> None:
    assert parse_http_date(format_http_date(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("60", 60), (" 7 ", 7), ("-1", None), ("1.5", None), ("", None), ("abc", None), ("٣", None)],
)
def test_delta_seconds(text: str, expected: int | None) -> None:
    assert parse_delta_seconds(text) == expected


def test_delta_seconds_overflow_is_capped_at_2_31() -> None:
    # RFC 9111 section 1.2.2.
    assert parse_delta_seconds("99999999999999999999") == DELTA_SECONDS_MAX == 2**31


def test_lists_respect_quotes_and_skip_empty_members() -> None:
    assert split_list([b'a, , b="x, y",c', b"d"]) == [b"a", b'b="x, y"', b"c", b"d"]
    assert split_list([b'"a\\", b", c']) == [b'"a\\", b"', b"c"]


def test_entity_tags() -> None:
    tags = parse_entity_tags([b'"abc", W/"xyz", junk, ""'])
    assert tags == [EntityTag(b'"abc"'), EntityTag(b'"xyz"', weak=True), EntityTag(b'""')]
    assert parse_entity_tags([b"*"]) is None
    strong, weak = EntityTag(b'"1"'), EntityTag(b'"1"', weak=True)
    # RFC 9110 section 8.8.3.2's comparison table.
    assert not weak.strong_match(weak)
    assert weak.weak_match(weak)
    assert not weak.strong_match(strong)
    assert weak.weak_match(strong)
    assert strong.strong_match(strong)
    assert not strong.weak_match(EntityTag(b'"2"'))


def test_cache_control_grammar() -> None:
    d = parse_directives([b'Max-Age=60, no-cache="Set-Cookie, X-Foo", private', b'max-age=5, x-ext="q\\"t"'])
    assert d == {"max-age": "60", "no-cache": "Set-Cookie, X-Foo", "private": None, "x-ext": 'q"t'}
    assert parse_directives([b'=5, bad directive, max-age=, s-maxage="10']) == {}


def test_response_directives() -> None:
    rd = ResponseDirectives.from_fields(
        fields(
            'Cache-Control: public, max-age=60, s-maxage=abc, no-cache="Set-Cookie", private=x',
            "Cache-Control: must-revalidate, stale-while-revalidate=30, stale-if-error=600",
        )
    )
    assert rd.public
    assert rd.must_revalidate
    assert rd.max_age == 60
    assert rd.s_maxage == 0  # invalid freshness information counts as stale (RFC 9111 4.2.1)
    assert not rd.no_cache
    assert rd.no_cache_fields == {b"set-cookie"}
    assert not rd.private
    assert rd.private_fields == {b"x"}
    assert (rd.stale_while_revalidate, rd.stale_if_error) == (30, 600)


def test_request_directives_and_pragma() -> None:
    rq = RequestDirectives.from_fields(fields("Cache-Control: max-stale, min-fresh=10, only-if-cached"))
    assert rq.max_stale == math.inf
    assert rq.min_fresh == 10
    assert rq.only_if_cached
    assert RequestDirectives.from_fields(fields("Cache-Control: max-stale=5")).max_stale == 5
    # RFC 9111 section 5.4: Pragma: no-cache counts only without Cache-Control.
    assert RequestDirectives.from_fields(fields("Pragma: no-cache")).no_cache
    assert not RequestDirectives.from_fields(fields("Pragma: no-cache", "Cache-Control: max-age=5")).no_cache


@given(st.lists(st.sampled_from(["max-age=1", "no-store", 'private="a, b"', " ", ",", "x=y"]), max_size=8))
def test_directive_parsing_is_independent_of_line_splitting(members: list[str]) -> None:
    one_line = parse_directives([", ".join(members).encode()])
    many_lines = parse_directives([m.encode() for m in members])
    assert one_line == many_lines
