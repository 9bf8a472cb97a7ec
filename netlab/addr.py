"""Host and port notation shared by every command and configuration table.

Accepted forms: ``HOST:PORT``, ``[V6ADDR]:PORT``, ``HOST`` (with a default port) and a bare
``:PORT`` (with a default host).  IPv6 literals must be bracketed when a port follows, as in
URLs (RFC 3986 section 3.2.2), because ``::1:53`` is ambiguous.
"""

from __future__ import annotations

import ipaddress

__all__ = ["format_hostport", "is_loopback", "parse_hostport"]


def parse_hostport(
    text: str, *, default_port: int | None = None, default_host: str = "127.0.0.1"
) -> tuple[str, int]:
    """Split ``text`` into ``(host, port)``.

    Raises:
        ValueError: the text has no port and there is no default, or the port is not 0-65535.
    """
    text = text.strip()
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in address {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in address {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        # No colon, or a bare IPv6 literal with no port.
        host, port_text = text, None
    host = host or default_host
    if port_text is None or port_text == "":
        if default_port is None:
            raise ValueError(f"address {text!r} needs a port (HOST:PORT)")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port {port_text!r} in address {text!r}")
    return host, int(port_text)


def format_hostport(host: str, port: int) -> str:
    """The inverse of :func:`parse_hostport`, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for names we would have to resolve."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
