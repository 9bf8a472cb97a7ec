"""The authoritative server as a handler of the DNS core, and reading its zone files.

Strategy: the answer is :meth:`netlab.proto.dns_auth.Authority.answer`, a pure function of the
question and the zones, so the handler ignores who asks and how; that is also why servers built
on it may turn on the core's reply cache.  Used by ``netlab dns serve`` and by the lab.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dnslib import DNSRecord

from netlab.aio.dns_server import DnsQuery
from netlab.proto.dns_auth import Authority
from netlab.proto.dns_zone import Zone, ZoneError, origin_from_filename, parse_zone_text

__all__ = ["AuthoritativeHandler", "load_zone_files"]


class AuthoritativeHandler:
    """The core's handler: the answer the zones give, whoever asks."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    async def __call__(self, query: DnsQuery) -> DNSRecord:
        return self.authority.answer(query.message)


def load_zone_files(paths: Sequence[str | Path]) -> list[Zone]:
    """Read master files; one without ``$ORIGIN`` is named by its file name (``alpha.test.zone``).

    This reads files: call it before serving, or through ``trio.to_thread.run_sync``.

    Raises:
        ZoneError: a file cannot be read or is not a servable zone.
    """
    zones = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ZoneError(f"cannot read zone file {path}: {exc}") from exc
        zones.append(parse_zone_text(text, origin=origin_from_filename(path.name), filename=str(path)))
    return zones
