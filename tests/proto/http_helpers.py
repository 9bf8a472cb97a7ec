"""Building header sections and stored responses for the cache policy tables."""

from __future__ import annotations

from netlab.proto.http_fields import format_http_date
from netlab.proto.http_stored import StoredResponse

#: A fixed "now" for the tables: 2023-11-14T22:13:20Z.
T0 = 1_700_000_000.0


def fields(*lines: str) -> list[tuple[bytes, bytes]]:
    """``fields("Cache-Control: max-age=60", ...)`` as (name, value) byte pairs."""
    out = []
    for line in lines:
        name, _, value = line.partition(":")
        out.append((name.strip().encode(), value.strip().encode()))
    return out


def date(offset: float) -> str:
    """An HTTP-date ``offset`` seconds after T0."""
    return format_http_date(T0 + offset).decode()


def stored(
    *lines: str,
    status: int = 200,
    request_time: float = T0,
    response_time: float = T0,
    vary_key: tuple[tuple[bytes, bytes | None], ...] = (),
    with_date: bool = True,
) -> StoredResponse:
    """A stored response received at ``response_time`` with a Date of that moment by default."""
    headers = fields(*lines)
    if with_date and not any(n.lower() == b"date" for n, _ in headers):
        headers.append((b"Date", format_http_date(response_time)))
    return StoredResponse(status, b"OK", tuple(headers), request_time, response_time, vary_key)
