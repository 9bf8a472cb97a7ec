"""Forwarding rules: request targets, hop-by-hop fields, Via and Max-Forwards (RFC 9110 7.6)."""

from __future__ import annotations

import pytest

from netlab.proto.http_forwarding import (
    ConnectTarget,
    LocalTarget,
    Target,
    TargetError,
    end_to_end_fields,
    max_forwards,
    parse_request_target,
    via_loops,
    via_value,
)
from tests.proto.http_helpers import fields

OWN = {"127.0.0.1:8080", "localhost:8080"}

TARGETS: list[tuple[str, str, Target | ConnectTarget | LocalTarget]] = [
    ("GET", "http://example.com/a?b=c", Target("example.com", 80, b"/a?b=c")),
    ("GET", "http://EXAMPLE.com:8000", Target("example.com", 8000, b"/")),
    ("GET", "http://example.com?q", Target("example.com", 80, b"/?q")),
    ("GET", "http://[::1]:81/x", Target("::1", 81, b"/x")),
    ("GET", "http://example.com/a#frag", Target("example.com", 80, b"/a")),
    ("CONNECT", "example.com:443", ConnectTarget("example.com", 443)),
    ("CONNECT", "[::1]:8443", ConnectTarget("::1", 8443)),
    ("OPTIONS", "*", LocalTarget(b"*")),
    ("GET", "/netlab/status", LocalTarget(b"/netlab/status")),
    ("GET", "http://127.0.0.1:8080/netlab/status", LocalTarget(b"/netlab/status")),
    # The URL-prefix form: the site after the proxy's own address.
    ("GET", "/example.com/page.html", Target("example.com", 80, b"/page.html")),
    ("GET", "/example.com", Target("example.com", 80, b"/")),
    ("GET", "/127.0.0.1:9000/x?y", Target("127.0.0.1", 9000, b"/x?y")),
    ("GET", "/localhost:9000/", Target("localhost", 9000, b"/")),
    ("GET", "/http://example.com/x", Target("example.com", 80, b"/x")),
    ("GET", "/http:/example.com/x", Target("example.com", 80, b"/x")),
    ("GET", "http://localhost:8080/example.com/page", Target("example.com", 80, b"/page")),
]


@pytest.mark.parametrize(("method", "target", "expected"), TARGETS)
def test_request_targets(method: str, target: str, expected: object) -> None:
    assert parse_request_target(method.encode(), target.encode(), OWN) == expected


BAD_TARGETS = [
    ("GET", "/", 400),  # origin-form for something else: never forwarded back to ourselves
    ("GET", "/index.html", 400),
    ("GET", "/127.0.0.1:8080/x", 400),  # the prefix form naming the proxy itself
    ("GET", "https://example.com/", 501),
    ("GET", "ftp://example.com/", 501),
    ("GET", "http://user:pw@example.com/", 400),
    ("GET", "http://exa mple.com/", 400),
    ("GET", "http://example.com:99999/", 400),
    ("GET", "http:///x", 400),
    ("CONNECT", "example.com", 400),
    ("CONNECT", "/x", 400),
]


@pytest.mark.parametrize(("method", "target", "status"), BAD_TARGETS)
def test_bad_request_targets(method: str, target: str, status: int) -> None:
    with pytest.raises(TargetError) as info:
        parse_request_target(method.encode(), target.encode(), OWN)
    assert info.value.status == status


def test_target_uri_is_the_normal_form() -> None:
    assert Target("example.com", 80, b"/a").uri == "http://example.com/a"
    assert Target("::1", 8080, b"/").uri == "http://[::1]:8080/"


def test_hop_by_hop_fields_are_removed_section_7_6_1() -> None:
    kept = end_to_end_fields(
        fields(
            "Connection: X-Foo, keep-alive",
            "X-Foo: 1",
            "Keep-Alive: 5",
            "Proxy-Connection: keep-alive",
            "Proxy-Authorization: Basic x",
            "TE: trailers",
            "Trailer: X-T",
            "Upgrade: h2c",
            "Transfer-Encoding: chunked",
            "Accept: */*",
            "Cache-Control: no-cache",
        )
    )
    assert kept == fields("Accept: */*", "Cache-Control: no-cache")


def test_via_section_7_6_3() -> None:
    assert via_value(b"1.0", "127.0.0.1:8080") == b"1.0 127.0.0.1:8080 (netlab)"
    assert via_loops(fields("Via: 1.1 other, 1.1 127.0.0.1:8080 (netlab)"), "127.0.0.1:8080")
    assert not via_loops(fields("Via: 1.1 other"), "127.0.0.1:8080")


def test_max_forwards_section_7_6_2() -> None:
    assert max_forwards(fields("Max-Forwards: 3")) == 3
    assert max_forwards(fields("Max-Forwards: x")) is None
    assert max_forwards(fields()) is None
