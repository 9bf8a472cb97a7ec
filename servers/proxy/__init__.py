"""The caching HTTP/1.1 proxy (RFC 9111) with CONNECT tunnels: ``netlab proxy``."""

from servers.proxy.command import command, service

__all__ = ["command", "service"]
