"""HTTP field values: the small grammars that caching depends on (RFC 9110).

Strategy: header sections are kept the way h11 hands them over, as sequences of ``(name, value)``
byte pairs; names are compared case-insensitively (RFC 9110 section 5.1).  Every parser here reads
untrusted bytes and returns None (or an empty result) for anything malformed instead of raising,
because a bad field from a peer must never take the proxy down; the caller decides what an
unusable value means (usually: as if absent, or "stale", as RFC 9111 suggests).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate

__all__ = [
    "DELTA_SECONDS_MAX",
    "EntityTag",
    "Fields",
    "combined_value",
    "field_values",
    "first_value",
    "format_http_date",
    "has_field",
    "parse_delta_seconds",
    "parse_entity_tags",
    "parse_http_date",
    "split_list",
]

#: A header section: ``(name, value)`` pairs in order, names in any case.
Fields = Sequence[tuple[bytes, bytes]]

#: RFC 9111 section 1.2.2: a delta-seconds value too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2**31


def field_values(fields: Fields, name: bytes) -> list[bytes]:
    """Every value of the field ``name`` (lower case), in order of appearance."""
    return [v for n, v in fields if n.lower() == name]


def has_field(fields: Fields, name: bytes) -> bool:
    return any(n.lower() == name for n, _ in fields)


def first_value(fields: Fields, name: bytes) -> bytes | None:
    """The first field line's value, or None: for singleton fields such as Date and ETag."""
    for n, v in fields:
        if n.lower() == name:
            return v
    return None


def combined_value(fields: Fields, name: bytes) -> bytes | None:
    """All field lines of ``name`` joined by ", " (RFC 9110 section 5.3), or None if absent."""
    values = field_values(fields, name)
    return b", ".join(v.strip() for v in values) if values else None


def split_list(values: Iterable[bytes]) -> list[bytes]:
    """The members of a comma-separated list field (RFC 9110 section 5.6.1), quotes respected.

    Empty members are dropped, as recipients must accept them (``a, , b``).
    """
    members: list[bytes] = []
    for value in values:
        if b'"' not in value:  # the common case needs no scanner
            members += [m for m in (part.strip() for part in value.split(b",")) if m]
            continue
        current = bytearray()
        quoted = escaped = False
        for byte in value:
            char = bytes((byte,))
            if escaped:
                escaped = False
            elif quoted and char == b"\\":
                escaped = True
            elif char == b'"':
                quoted = not quoted
            elif char == b"," and not quoted:
                if member := bytes(current).strip():
                    members.append(member)
                current.clear()
                continue
            current += char
        if member := bytes(current).strip():
            members.append(member)
    return members


def parse_delta_seconds(text: bytes | str | None) -> int | None:
    """A non-negative integer of seconds (RFC 9111 section 1.2.2), capped at 2^31; None if invalid."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    return min(int(text), DELTA_SECONDS_MAX)


# RFC 9110 section 5.6.7: one preferred format and two obsolete ones that recipients must accept.
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(rf"^[A-Za-z]{{3}}, (\d\d) ([A-Za-z]{{3}}) (\d{{4}}) {_TIME} GMT$")
_RFC850 = re.compile(rf"^[A-Za-z]{{6,9}}, (\d\d)-([A-Za-z]{{3}})-(\d\d) {_TIME} GMT$")
_ASCTIME = re.compile(rf"^[A-Za-z]{{3}} ([A-Za-z]{{3}}) ([ \d]\d) {_TIME} (\d{{4}})$")
_SECONDS_PER_YEAR = 365.2425 * 86400


def parse_http_date(value: bytes | str | None, *, now: float | None = None) -> float | None:
    """An HTTP-date as seconds since the epoch, or None if it is not a valid one.

    ``now`` resolves the two-digit years of the obsolete RFC 850 format: a date that would lie more
    than 50 years in the future means the most recent past year with those digits (RFC 9110
    section 5.6.7).  Without ``now`` the years 70-99 are 19xx and 00-69 are 20xx.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if m := _IMF_FIXDATE.match(value):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _ASCTIME.match(value):
        month, day, hh, mm, ss, year = m.groups()
    elif m := _RFC850.match(value):
        day, month, yy, hh, mm, ss = m.groups()
        year = str(_full_year(int(yy), now))
    else:
        return None
    month_number = _MONTHS.get(month.capitalize())
    if month_number is None:
        return None
    fields = (int(year), month_number, int(day), int(hh), int(mm), int(ss))
    if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] <= 60):
        return None
    return float(calendar.timegm((*fields, 0, 0, 0)))


def _full_year(yy: int, now: float | None) -> int:
    if now is None:
        return 1900 + yy if yy >= 70 else 2000 + yy
    this_year = 1970 + int(now // _SECONDS_PER_YEAR)
    year = this_year - this_year % 100 + yy
    return year - 100 if year > this_year + 50 else year


def format_http_date(when: float) -> bytes:
    """``when`` (seconds since the epoch) as an IMF-fixdate, the format senders must use."""
    return formatdate(when, usegmt=True).encode("ascii")


@dataclass(frozen=True)
class EntityTag:
    """An entity tag (RFC 9110 section 8.8.3): the opaque quoted string and its weakness."""

    opaque: bytes  # including the double quotes
    weak: bool = False

    def strong_match(self, other: EntityTag) -> bool:
        """Strong comparison (section 8.8.3.2): both strong and identical."""
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_match(self, other: EntityTag) -> bool:
        """Weak comparison: the opaque tags are identical, whatever their weakness."""
        return self.opaque == other.opaque

    def to_bytes(self) -> bytes:
        return (b"W/" if self.weak else b"") + self.opaque


_ETAG = re.compile(rb'^(W/)?("[\x21\x23-\x7e\x80-\xff]*")$')


def parse_entity_tags(values: Iterable[bytes]) -> list[EntityTag] | None:
    """The entity tags of an ETag or If-None-Match field; None for ``*`` (any representation).

    Malformed members are skipped: a tag we cannot read can match nothing.
    """
    tags: list[EntityTag] = []
    for member in split_list(values):
        if member == b"*":
            return None
        if m := _ETAG.match(member):
            tags.append(EntityTag(m.group(2), weak=m.group(1) is not None))
    return tags
