"""The lab shop's web site, and how its origin answers a request (no I/O).

Strategy: the site ships in this package (``site/``) and is read into memory once
(:func:`load_site`); :func:`respond` then chooses every answer from the request's method, target
and fields alone, so each rule can be checked in a table.  Each page carries different caching
fields (:data:`CACHE_CONTROL`), so that a cache between a client and this origin can be watched
at work: a fresh copy served for a minute or a day, a copy revalidated on every use (304), a
heuristic freshness lifetime, and a page with one representation per language (``Vary``).

What the origin implements of RFC 9110: GET and HEAD (405 with ``Allow`` otherwise); origin-form
and absolute-form targets (RFC 9112 section 3.2); strong ETags and Last-Modified; conditional
GET with If-None-Match compared weakly, If-Modified-Since only without it (section 13.2.2);
304 answers with the fields a 200 would have had that section 15.4.5 lists; proactive
negotiation of the language (section 12.5.4, RFC 4647 lookup).  It ignores Range, as section
14.2 allows.
"""

from __future__ import annotations

import calendar
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from netlab.proto.http_fields import (
    Fields,
    field_values,
    format_http_date,
    parse_entity_tags,
    parse_http_date,
    split_list,
)

__all__ = [
    "CACHE_CONTROL",
    "PUBLISHED",
    "Reply",
    "Representation",
    "Site",
    "load_site",
    "plain_reply",
    "respond",
]

#: Cache-Control per page; a page not listed has none (a cache may guess, RFC 9111 4.2.2).
CACHE_CONTROL: dict[str, str] = {
    "/index.html": "max-age=60",  # fresh for a minute (HIT), then revalidated (304)
    "/prices.html": "no-cache",  # stored, but revalidated before every use
    "/style.css": "max-age=86400",
    "/images/logo.svg": "max-age=86400",
    "/images/banner.png": "max-age=86400",
    "/hello.txt": "max-age=300",  # one representation per language: Vary: Accept-Language
}
#: The Last-Modified date of every page: when the shipped site was published.  A fixed date
#: keeps the validators the same across restarts, so caches' copies stay valid.
PUBLISHED = float(calendar.timegm((2024, 6, 1, 12, 0, 0, 0, 0, 0)))
DEFAULT_LANGUAGE = "en"
SERVER = b"netlab-lab-origin"
_TYPES = {".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".css": "text/css"}
_ALLOW = b"GET, HEAD"
_PUBLISHED_DATE = format_http_date(PUBLISHED)


@dataclass(frozen=True)
class Representation:
    """One representation of a page: its bytes, type, language and entity tag."""

    body: bytes
    content_type: str
    language: str | None = None

    @cached_property
    def etag(self) -> bytes:
        """A strong validator: it changes whenever the bytes do (RFC 9110 section 8.8.3)."""
        return b'"' + hashlib.sha256(self.body).hexdigest()[:16].encode() + b'"'


@dataclass(frozen=True)
class Site:
    """Pages by path; a page with several representations has one per language, default first."""

    pages: dict[str, tuple[Representation, ...]]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def load_site() -> Site:
    """The shipped site (blocking: it reads the files).

    ``name.LANG.ext`` files are the language representations of ``/name.ext``.
    """
    root = Path(str(resources.files(__name__.rpartition(".")[0]).joinpath("site")))
    pages: dict[str, list[Representation]] = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = file.relative_to(root)
        stem, suffixes = relative.name.split(".", 1)[0], relative.suffixes
        language = suffixes[0][1:] if len(suffixes) == 2 else None
        path = "/" + relative.with_name(stem + suffixes[-1]).as_posix()
        kind = _TYPES.get(suffixes[-1]) or mimetypes.guess_type(relative.name)[0]
        rep = Representation(file.read_bytes(), kind or "application/octet-stream", language)
        pages.setdefault(path, []).append(rep)
    for reps in pages.values():
        reps.sort(key=lambda r: (r.language != DEFAULT_LANGUAGE, r.language or ""))
    return Site({path: tuple(reps) for path, reps in pages.items()})


def respond(site: Site, method: bytes, target: bytes, fields: Fields, now: float) -> Reply:
    """The origin's answer to one request (``now``: the time, for the Date field)."""
    date = (b"Date", format_http_date(now))
    if method not in (b"GET", b"HEAD"):
        return _text(405, b"only GET and HEAD here\n", date, (b"Allow", _ALLOW))
    path = _path_of(target)
    if path == "/":
        path = "/index.html"
    reps = site.pages.get(path)
    if reps is None:
        return _text(404, b"no such page in the lab shop\n", date)
    rep = _negotiate(reps, fields) if len(reps) > 1 else reps[0]
    headers = [date, (b"Server", SERVER), (b"ETag", rep.etag), (b"Last-Modified", _PUBLISHED_DATE)]
    if policy := CACHE_CONTROL.get(path):
        headers.append((b"Cache-Control", policy.encode()))
    if len(reps) > 1:
        headers.append((b"Vary", b"Accept-Language"))
    if _not_modified(rep, fields):
        return Reply(304, headers, b"")
    headers.append((b"Content-Type", rep.content_type.encode()))
    if rep.language:
        headers.append((b"Content-Language", rep.language.encode()))
    headers.append((b"Content-Length", str(len(rep.body)).encode()))
    return Reply(200, headers, b"" if method == b"HEAD" else rep.body)


def plain_reply(status: int, text: str, now: float) -> Reply:
    """An answer of ``status`` explaining itself in one line of plain text (errors)."""
    return _text(status, text.encode() + b"\n", (b"Date", format_http_date(now)))


def _text(status: int, body: bytes, *extra: tuple[bytes, bytes]) -> Reply:
    headers = [*extra, (b"Server", SERVER), (b"Content-Type", b"text/plain; charset=utf-8")]
    return Reply(status, [*headers, (b"Content-Length", str(len(body)).encode())], body)


def _path_of(target: bytes) -> str:
    """The path of an origin-form or absolute-form target, without the query."""
    text = target.decode("latin-1")
    if "://" in text:
        rest = text.partition("://")[2]
        slash = rest.find("/")
        text = rest[slash:] if slash >= 0 else "/"
    return text.split("?", 1)[0].split("#", 1)[0] or "/"


def _not_modified(rep: Representation, fields: Fields) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present; else If-Modified-Since."""
    inm = field_values(fields, b"if-none-match")
    if inm:
        tags = parse_entity_tags(inm)
        return tags is None or any(tag.opaque == rep.etag for tag in tags)  # weak comparison
    ims = field_values(fields, b"if-modified-since")
    # Section 13.1.3: only a single valid HTTP-date counts.
    since = parse_http_date(ims[0]) if len(ims) == 1 else None
    return since is not None and since >= PUBLISHED


def _negotiate(reps: tuple[Representation, ...], fields: Fields) -> Representation:
    """The representation in the client's most preferred language we have (else the default).

    Accept-Language ranges are tried in order of their weight, each by RFC 4647 lookup: the
    range, then shorter and shorter prefixes of it ("de-CH", then "de").  q=0 rules one out.
    """
    by_language = {rep.language: rep for rep in reps}
    ranges: list[tuple[float, int, str]] = []
    for position, member in enumerate(split_list(field_values(fields, b"accept-language"))):
        tag, _, params = member.decode("latin-1").partition(";")
        weight = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                continue
            if not 0 <= weight <= 1:  # RFC 9110 section 12.4.2
                continue
        if weight > 0:
            ranges.append((-weight, position, tag.strip().lower()))
    for _weight, _position, tag in sorted(ranges):
        if tag == "*":
            return reps[0]
        parts = tag.split("-")
        while parts:
            if (rep := by_language.get("-".join(parts))) is not None:
                return rep
            parts.pop()
    return reps[0]
