"""What a forwarding proxy does to a message on its way through (RFC 9110 section 7, RFC 9112).

Strategy: pure functions from what arrived to what is sent on, kept apart from the I/O so each
rule can be checked in a table:

* the request target: absolute-form for a proxy (RFC 9112 section 3.2.2), authority-form for
  CONNECT (3.2.3), and the "URL-prefix" form people type into an address bar,
  ``http://proxy:8080/example.com/page.html``; anything else addressed to the proxy itself is
  not forwarded, so a request can never loop back into it;
* hop-by-hop fields removed, including the ones the Connection field names (section 7.6.1);
* Via appended (section 7.6.3), Max-Forwards honoured for TRACE and OPTIONS (section 7.6.2);
* the cache key: the target URI in one normal form (RFC 9111 section 2, RFC 9110 section 4.2.3).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

from netlab.proto.http_fields import Fields, field_values, split_list

__all__ = [
    "HOP_BY_HOP",
    "ConnectTarget",
    "LocalTarget",
    "Target",
    "TargetError",
    "end_to_end_fields",
    "max_forwards",
    "parse_request_target",
    "target_from_uri",
    "via_loops",
    "via_value",
]

#: Fields that describe one connection, never forwarded (RFC 9110 section 7.6.1; Proxy-* apply to
#: this proxy alone, section 11.7; Transfer-Encoding and TE are framing, RFC 9112 section 6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-authentication-info",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def end_to_end_fields(fields: Fields) -> list[tuple[bytes, bytes]]:
    """``fields`` without hop-by-hop ones and without those the Connection field names."""
    named = {m.lower() for m in split_list(field_values(fields, b"connection"))}
    return [(n, v) for n, v in fields if (ln := n.lower()) not in HOP_BY_HOP and ln not in named]


def via_value(http_version: bytes, received_by: str) -> bytes:
    """Our Via member (section 7.6.3): ``1.1 host:port (netlab)``; the protocol name is HTTP."""
    return b"%s %s (netlab)" % (http_version, received_by.encode("ascii"))


def via_loops(fields: Fields, received_by: str) -> bool:
    """Whether the message already passed through us: our received-by is in its Via."""
    mine = received_by.encode("ascii").lower()
    for member in split_list(field_values(fields, b"via")):
        parts = member.split()
        if len(parts) >= 2 and parts[1].lower() == mine:
            return True
    return False


def max_forwards(fields: Fields) -> int | None:
    """The Max-Forwards value (section 7.6.2), or None if absent or not a number."""
    values = field_values(fields, b"max-forwards")
    if not values or not values[0].strip().isdigit():
        return None
    return int(values[0].strip())


class TargetError(Exception):
    """A request target that cannot be served; ``status`` is the reply (400, 501, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Target:
    """An http origin to forward to, and the path (origin-form target) to ask it for."""

    host: str  # lower case; an IPv6 literal without brackets
    port: int
    path: bytes  # origin-form: "/" path [ "?" query ]

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    @cached_property
    def uri(self) -> str:
        """The target URI in normal form: the primary cache key (RFC 9111 section 2)."""
        return f"http://{self.authority}{self.path.decode('latin-1')}"


@dataclass(frozen=True)
class ConnectTarget:
    """A CONNECT request's authority-form target (RFC 9112 section 3.2.3)."""

    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LocalTarget:
    """A request for the proxy itself (its status page), not to be forwarded."""

    path: bytes


STATUS_PATH = b"/netlab/status"

# RFC 3986 section 3.2.2 reg-name, restricted to what DNS can hold (letters, digits, '-', '.').
_REG_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?$")


def _host_port(authority: str, default_port: int | None) -> tuple[str, int]:
    """Split and check ``host[:port]``; raises ValueError if either is unusable."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("unclosed IPv6 literal")
        host, rest = authority[1:end], authority[end + 1 :]
        ipaddress.IPv6Address(host)
        if rest and not rest.startswith(":"):
            raise ValueError("junk after IPv6 literal")
        port_text = rest[1:]
    else:
        host, _, port_text = authority.partition(":")
        host = host.lower()
        if not _REG_NAME.match(host):
            raise ValueError(f"bad host {host!r}")
    if not port_text:
        if default_port is None:
            raise ValueError("a port is required")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    return host.lower().rstrip("."), int(port_text)


def target_from_uri(uri: str) -> Target:
    """The :class:`Target` of an ``http://`` URI.

    Raises:
        TargetError: not an http URI, or a host or port that cannot be used.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise TargetError(400, f"not an absolute URI: {uri[:100]!r}")
    if scheme.lower() != "http":
        raise TargetError(501, f"this proxy forwards http:// URIs (and CONNECT for https), not {scheme}://")
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        # RFC 9110 section 4.2.4: userinfo in an http URI is deprecated and a phishing tool.
        raise TargetError(400, "userinfo in the URI is not allowed")
    try:
        host, port = _host_port(authority, 80)
    except ValueError as exc:
        raise TargetError(400, f"bad authority {authority[:100]!r}: {exc}") from exc
    if not path.startswith("/"):
        path = "/" + path  # "http://host?q" means path "/" (RFC 9112 section 3.2.1)
    return Target(host, port, path.encode("latin-1"))


def parse_request_target(
    method: bytes, target: bytes, own_authorities: Collection[str]
) -> Target | ConnectTarget | LocalTarget:
    """Where a request received by the proxy should go.

    Args:
        method: the request method.
        target: the request-target as received.
        own_authorities: the ``host:port`` strings (lower case) that address this proxy, so
            that an absolute URI naming it is served locally instead of forwarded to itself.

    Raises:
        TargetError: with 400 for a target the proxy will not forward (including any
            origin-form request other than the status page or the URL-prefix form).
    """
    text = target.decode("latin-1")
    if method == b"CONNECT":
        try:
            return ConnectTarget(*_host_port(text, None))
        except ValueError as exc:
            raise TargetError(400, f"CONNECT needs host:port, got {text[:100]!r}") from exc
    if text == "*":
        return LocalTarget(b"*")  # OPTIONS * addresses the proxy itself (RFC 9110 section 9.3.7)
    if not text.startswith("/"):
        parsed = target_from_uri(text)
        if parsed.authority.lower() not in own_authorities and _with_port(parsed) not in own_authorities:
            return parsed
        text = parsed.path.decode("latin-1")
    return _local_or_prefixed(text.encode("latin-1"), own_authorities)


def _with_port(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


# Names of files a browser asks a site for on its own (/favicon.ico) or that relative links
# produce; none is a top-level domain, so "/favicon.ico" is not taken for a host name.
_FILE_SUFFIXES = frozenset(
    [
        "html",
        "htm",
        "ico",
        "css",
        "js",
        "mjs",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "txt",
        "json",
        "xml",
        "php",
        "map",
        "woff",
        "woff2",
    ]
)


def _looks_like_host(authority: str) -> bool:
    """Whether the first path segment of a URL-prefix request names a host (and maybe a port)."""
    if authority.startswith("["):
        return True
    host = authority.split(":")[0].lower()
    if host == "localhost":
        return True
    labels = host.rstrip(".").split(".")
    return len(labels) > 1 and labels[-1] not in _FILE_SUFFIXES


def _local_or_prefixed(path: bytes, own_authorities: Collection[str]) -> Target | LocalTarget:
    """An origin-form path sent to the proxy: its status page, or ``/<host[:port]>/<path>``."""
    if path == STATUS_PATH or path.startswith(STATUS_PATH + b"?"):
        return LocalTarget(STATUS_PATH)
    text = path.decode("latin-1")[1:]
    if text.startswith(("http://", "http:/")):
        # A whole URL pasted after the proxy's address ("//" may have been merged by a browser).
        text = text[len("http://") :] if text.startswith("http://") else text[len("http:/") :]
    first = re.split(r"[/?]", text, maxsplit=1)[0]
    if not first or not _looks_like_host(first):
        raise TargetError(
            400,
            "this is a proxy: send absolute-form requests (http://host/path), "
            "or put the site after the proxy's address (http://<proxy>/example.com/page.html)",
        )
    parsed = target_from_uri("http://" + text)
    if parsed.authority.lower() in own_authorities or _with_port(parsed) in own_authorities:
        raise TargetError(400, "the URL-prefix form names this proxy itself (a loop)")
    return parsed
