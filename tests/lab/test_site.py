"""The lab shop's answers (netlab.lab.site.respond): a table of requests, no I/O."""

from __future__ import annotations

import re

import pytest

from netlab.lab.site import CACHE_CONTROL, PUBLISHED, Reply, load_site, respond
from netlab.proto.http_fields import first_value, format_http_date

NOW = PUBLISHED + 86400 * 400
SITE = load_site()


def ask(target: str, *fields: tuple[str, str], method: str = "GET") -> Reply:
    raw = [(n.encode(), v.encode()) for n, v in fields]
    return respond(SITE, method.encode(), target.encode(), raw, NOW)


def field(reply: Reply, name: str) -> str | None:
    value = first_value(reply.headers, name.lower().encode())
    return value.decode() if value is not None else None


def etag(target: str, *fields: tuple[str, str]) -> str:
    value = field(ask(target, *fields), "ETag")
    assert value is not None
    return value


def test_the_site_ships_every_page_the_front_page_links_to() -> None:
    assert set(CACHE_CONTROL) <= set(SITE.pages)
    index = SITE.pages["/index.html"][0].body.decode()
    for link in re.findall(r'(?:href|src)="(/[^"]*)"', index):
        assert ask(link).status == 200, link
    assert ask("/images/banner.png").body.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("target", "status", "cache_control", "content_type"),
    [
        ("/", 200, "max-age=60", "text/html; charset=utf-8"),
        ("/index.html", 200, "max-age=60", "text/html; charset=utf-8"),
        ("/prices.html", 200, "no-cache", "text/html; charset=utf-8"),
        ("/about.html", 200, None, "text/html; charset=utf-8"),  # Last-Modified only: heuristic
        ("/style.css", 200, "max-age=86400", "text/css"),
        ("/images/logo.svg", 200, "max-age=86400", "image/svg+xml"),
        ("/images/banner.png", 200, "max-age=86400", "image/png"),
        ("/hello.txt", 200, "max-age=300", "text/plain; charset=utf-8"),
        ("/?q=1#frag", 200, "max-age=60", "text/html; charset=utf-8"),  # query and fragment ignored
        ("http://www.shop.test/style.css", 200, "max-age=86400", "text/css"),  # absolute-form
        ("http://www.shop.test", 200, "max-age=60", "text/html; charset=utf-8"),
        ("/hello.en.txt", 404, None, "text/plain; charset=utf-8"),  # a variant is not a page
        ("/../netlab/lab/site.py", 404, None, "text/plain; charset=utf-8"),
        ("/nothing", 404, None, "text/plain; charset=utf-8"),
    ],
)
def test_pages_and_their_caching_fields(
    target: str, status: int, cache_control: str | None, content_type: str
) -> None:
    reply = ask(target)
    assert reply.status == status
    assert field(reply, "Cache-Control") == cache_control
    assert field(reply, "Content-Type") == content_type
    assert field(reply, "Content-Length") == str(len(reply.body))
    assert field(reply, "Date") == format_http_date(NOW).decode()
    if status == 200:
        assert field(reply, "Last-Modified") == format_http_date(PUBLISHED).decode()
        assert re.fullmatch(r'"[0-9a-f]{16}"', field(reply, "ETag") or "")


def test_head_has_the_fields_of_get_and_no_body() -> None:
    get, head = ask("/style.css"), ask("/style.css", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers == get.headers  # Content-Length included: the length GET would send


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "BREW"])
def test_other_methods_get_405_with_allow(method: str) -> None:
    reply = ask("/", method=method)
    assert reply.status == 405
    assert field(reply, "Allow") == "GET, HEAD"


def test_etags_differ_by_content_and_stay_the_same_across_loads() -> None:
    again = load_site()
    assert again.pages["/index.html"][0].etag == SITE.pages["/index.html"][0].etag
    tags = {etag(path) for path in SITE.pages}
    assert len(tags) == len(SITE.pages)


def test_if_none_match_revalidates_with_304_and_the_fields_a_200_would_carry() -> None:
    tag = etag("/prices.html")
    reply = ask("/prices.html", ("If-None-Match", tag))
    assert reply.status == 304
    assert reply.body == b""
    assert field(reply, "ETag") == tag
    assert field(reply, "Cache-Control") == "no-cache"
    assert field(reply, "Last-Modified") == format_http_date(PUBLISHED).decode()
    assert field(reply, "Content-Length") is None  # RFC 9110 section 15.4.5
    assert field(reply, "Content-Type") is None


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ((("If-None-Match", '"other", {tag}'),), 304),
        ((("If-None-Match", "W/{tag}"),), 304),  # weak comparison (RFC 9110 section 13.1.2)
        ((("If-None-Match", "*"),), 304),
        ((("If-None-Match", '"other"'),), 200),
        ((("If-None-Match", "garbage"),), 200),
        ((("If-Modified-Since", format_http_date(PUBLISHED).decode()),), 304),
        ((("If-Modified-Since", format_http_date(PUBLISHED - 1).decode()),), 200),
        ((("If-Modified-Since", "yesterday"),), 200),
        # Two dates: not one valid HTTP-date, so ignored (RFC 9110 section 13.1.3).
        ((("If-Modified-Since", format_http_date(NOW).decode()), ("If-Modified-Since", "x")), 200),
        # If-None-Match decides when present, whatever If-Modified-Since says (section 13.2.2).
        ((("If-None-Match", '"other"'), ("If-Modified-Since", format_http_date(NOW).decode())), 200),
        ((("If-None-Match", "{tag}"), ("If-Modified-Since", format_http_date(0).decode())), 304),
    ],
)
def test_conditional_requests(fields: tuple[tuple[str, str], ...], status: int) -> None:
    tag = etag("/index.html")
    filled = tuple((n, v.format(tag=tag)) for n, v in fields)
    assert ask("/", *filled).status == status


@pytest.mark.parametrize(
    ("accept_language", "language"),
    [
        (None, "en"),
        ("fr", "fr"),
        ("de-CH", "de"),  # RFC 4647 lookup: de-CH, then de
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7", "fr"),
        ("en;q=0.5, de", "de"),
        ("de;q=0, fr;q=0.1", "fr"),  # q=0: not acceptable
        ("it, es", "en"),  # nothing we have: the default
        ("*", "en"),
        ("it, *;q=0.5", "en"),
        ("fr;q=bad, de;q=0.4", "de"),
        ("fr;q=7, de;q=0.4", "de"),  # outside 0..1: that member is dropped
        ("FR", "fr"),
    ],
)
def test_language_negotiation(accept_language: str | None, language: str) -> None:
    fields = (("Accept-Language", accept_language),) if accept_language is not None else ()
    reply = ask("/hello.txt", *fields)
    assert reply.status == 200
    assert field(reply, "Content-Language") == language
    assert field(reply, "Vary") == "Accept-Language"


def test_each_language_has_its_own_etag_and_304_keeps_vary() -> None:
    french = etag("/hello.txt", ("Accept-Language", "fr"))
    assert french != etag("/hello.txt", ("Accept-Language", "de"))
    reply = ask("/hello.txt", ("Accept-Language", "fr"), ("If-None-Match", french))
    assert reply.status == 304
    assert field(reply, "Vary") == "Accept-Language"
    assert ask("/hello.txt", ("Accept-Language", "de"), ("If-None-Match", french)).status == 200


def test_pages_without_languages_carry_no_vary() -> None:
    assert all(field(ask(path), "Vary") is None for path in SITE.pages if path != "/hello.txt")
