"""Validation tables: RFC 9111 sections 4.3.1 (conditional requests), 4.3.2 (clients' own
validators answered by the cache), 4.3.4 / 3.2 (updating a stored response from a 304) and 4.3.5
(updating it from a response to HEAD)."""

from __future__ import annotations

import pytest

from netlab.proto.http_validation import (
    client_wants_304,
    freshen,
    not_modified_fields,
    revalidation_fields,
    update_from_head,
)
from tests.proto.http_helpers import T0, date, fields, stored

LM = date(-3600)


def test_section_4_3_1_conditional_request_uses_both_validators() -> None:
    s = stored('ETag: W/"v1"', "Last-Modified: " + LM)
    assert revalidation_fields(s) == [(b"If-None-Match", b'W/"v1"'), (b"If-Modified-Since", LM.encode())]
    assert revalidation_fields(stored("Cache-Control: max-age=1")) == []
    assert revalidation_fields(stored("Last-Modified: garbage")) == []


FRESHEN = [
    # (stored lines, 304 lines, updated?)
    (['ETag: "v1"'], ['ETag: "v1"'], True),
    (['ETag: "v1"'], ['ETag: "v2"'], False),  # about another representation
    (['ETag: W/"v1"'], ['ETag: W/"v1"'], True),  # weak validator: weak comparison
    (['ETag: W/"v1"'], ['ETag: "v1"'], False),  # a strong validator needs a strong match
    (["Last-Modified: " + LM], ["Last-Modified: " + LM], True),
    (["Last-Modified: " + LM], ["Last-Modified: " + date(-10)], False),
    (['ETag: "v1"'], [], True),  # no validator in the 304: it is about what we asked
    ([], ['ETag: "v1"'], False),
]


@pytest.mark.parametrize(("stored_lines", "lines_304", "updated"), FRESHEN)
def test_section_4_3_4_which_stored_response_a_304_updates(
    stored_lines: list[str], lines_304: list[str], updated: bool
) -> None:
    result = freshen(stored(*stored_lines), fields(*lines_304), request_time=T0 + 99, response_time=T0 + 100)
    assert (result is not None) is updated


def test_section_3_2_header_update() -> None:
    s = stored(
        'ETag: "v1"',
        "Cache-Control: max-age=60",
        "Content-Length: 5",
        "Content-Encoding: gzip",
        "Content-Type: text/plain",
        "Vary: Accept-Encoding",
        "Age: 30",
        "X-Old: kept",
        vary_key=((b"accept-encoding", b"gzip"),),
    )
    new = freshen(
        s,
        fields(
            'ETag: "v1"',
            "Cache-Control: max-age=120",
            "Content-Length: 0",  # describes the 304, not the stored body
            "Content-Encoding: br",
            "Vary: *",
            "Connection: close",
            "Date: " + date(100),
        ),
        request_time=T0 + 99,
        response_time=T0 + 100,
    )
    assert new is not None
    h = {n.lower(): v for n, v in new.headers}
    assert h[b"cache-control"] == b"max-age=120"
    assert h[b"content-length"] == b"5"
    assert h[b"content-encoding"] == b"gzip"
    assert h[b"vary"] == b"Accept-Encoding"
    assert h[b"x-old"] == b"kept"
    assert h[b"date"] == date(100).encode()
    assert b"connection" not in h
    assert b"age" not in h
    assert (new.request_time, new.response_time, new.vary_key) == (T0 + 99, T0 + 100, s.vary_key)


HEAD_UPDATES = [
    # (stored lines, HEAD response lines, updated? else stale), the stored body being 5 bytes
    (['ETag: "v1"', "Content-Length: 5"], ['ETag: "v1"', "Content-Length: 5"], True),
    (['ETag: "v1"', "Content-Length: 5"], ['ETag: "v1"'], True),  # no Content-Length: not compared
    (['ETag: "v1"', "Content-Length: 5"], ['ETag: "v1"', "Content-Length: 6"], False),
    (['ETag: "v1"', "Content-Length: 5"], ['ETag: "v2"', "Content-Length: 5"], False),
    (['ETag: "v1"', "Content-Length: 5"], ['ETag: W/"v1"'], False),
    (['ETag: "v1"', "Last-Modified: " + LM], ['ETag: "v1"'], False),  # both validators must match
    (['ETag: "v1"', "Last-Modified: " + LM], ['ETag: "v1"', "Last-Modified: " + LM], True),
    (["Last-Modified: " + LM], ["Last-Modified: " + LM], True),
    (["Last-Modified: " + LM], ["Last-Modified: " + date(-10)], False),
    (["Content-Length: 5"], ["Content-Length: 5"], False),  # no validator: nothing tells
]


@pytest.mark.parametrize(("stored_lines", "head_lines", "updated"), HEAD_UPDATES)
def test_section_4_3_5_which_stored_response_a_head_response_updates(
    stored_lines: list[str], head_lines: list[str], updated: bool
) -> None:
    s = stored(*stored_lines)
    new = update_from_head(s, fields(*head_lines), request_time=T0 + 99, response_time=T0 + 100)
    assert (new is not None) is updated


def test_section_4_3_5_update_replaces_fields_as_section_3_2_says() -> None:
    s = stored('ETag: "v1"', "Content-Length: 5", "Cache-Control: max-age=60", "X-Old: kept")
    new = update_from_head(
        s,
        fields('ETag: "v1"', "Content-Length: 5", "Cache-Control: max-age=600", "Connection: close"),
        request_time=T0 + 99,
        response_time=T0 + 100,
    )
    assert new is not None
    h = {n.lower(): v for n, v in new.headers}
    assert (h[b"cache-control"], h[b"x-old"], h[b"content-length"]) == (b"max-age=600", b"kept", b"5")
    assert b"connection" not in h
    assert new.date == T0 + 100


def test_304_without_date_gets_the_time_received() -> None:
    new = freshen(stored('ETag: "v1"'), fields('ETag: "v1"'), request_time=T0 + 9, response_time=T0 + 10)
    assert new is not None
    assert new.date == T0 + 10


CLIENT_CONDITIONALS = [
    # (method, request lines, 304 from the cache?) against ETag "v1", Last-Modified LM
    ("GET", ['If-None-Match: "v1"'], True),
    ("GET", ['If-None-Match: W/"v1"'], True),  # weak comparison (RFC 9110 13.1.2)
    ("GET", ['If-None-Match: "v0", "v1"'], True),
    ("GET", ['If-None-Match: "v2"'], False),
    ("GET", ["If-None-Match: *"], True),
    ("HEAD", ['If-None-Match: "v1"'], True),
    ("GET", ["If-Modified-Since: " + LM], True),
    ("GET", ["If-Modified-Since: " + date(-3601)], False),
    ("GET", ["If-Modified-Since: " + date(0)], True),
    ("GET", ["If-Modified-Since: yesterday"], False),  # invalid: ignored
    ("GET", ["If-Modified-Since: " + LM, "If-Modified-Since: " + LM], False),  # more than one: ignored
    ("GET", ['If-None-Match: "v2"', "If-Modified-Since: " + date(0)], False),  # INM takes precedence
    ("POST", ['If-None-Match: "v1"'], False),
    ("GET", [], False),
]


@pytest.mark.parametrize(("method", "lines", "expected"), CLIENT_CONDITIONALS)
def test_section_4_3_2_client_conditionals(method: str, lines: list[str], expected: bool) -> None:
    s = stored('ETag: "v1"', "Last-Modified: " + LM)
    assert client_wants_304(method.encode(), fields(*lines), s) is expected


def test_if_modified_since_without_last_modified_uses_date() -> None:
    s = stored("Date: " + date(-100))
    assert client_wants_304(b"GET", fields("If-Modified-Since: " + date(-50)), s)
    assert not client_wants_304(b"GET", fields("If-Modified-Since: " + date(-150)), s)


def test_rfc9110_15_4_5_what_a_304_carries() -> None:
    s = stored(
        'ETag: "v1"',
        "Cache-Control: max-age=5",
        "Content-Type: text/html",
        "Vary: Accept",
        "Content-Length: 9",
    )
    names = {n.lower() for n, _ in not_modified_fields(s)}
    assert names == {b"etag", b"cache-control", b"vary", b"date"}
