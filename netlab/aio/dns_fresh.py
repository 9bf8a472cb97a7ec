"""Replaying kept replies for a server whose answers age: a resolver's.

Strategy: the server core can answer a repeated question from the octets of the reply it sent
the first time (:mod:`netlab.proto.dns_fastpath`), in its receive loop, which is what lets Python
keep up with a load generator.  An authoritative server's replies never change; a resolver's do,
because the TTLs in them count down and the records expire.  So :class:`FreshReplies` keeps a
reply for at most ``replay_for`` seconds (TTLs are whole seconds, so a replayed TTL is off by
less than that) and never past the smallest TTL inside it, and keeps only NOERROR and NXDOMAIN
replies: a failure is always asked afresh.

When a kept reply goes stale, one query goes the whole way (to the resolver, whose cache
answers) and renews it; queries for the same question that arrive meanwhile get the stale reply
for up to ``refresh_wait`` seconds more, if its records are still within their TTL.  Without
that, every popular question would fall out of the fast path at once each second and a burst of
slow answers would follow.

:class:`CheckedServer` puts an access check in front of the replay, so that a client the handler
would refuse is never given a kept answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from netlab.aio.dns_server import DnsHandler, DnsServer, DnsServerSettings
from netlab.aio.endpoint import Addr
from netlab.proto.dns_fastpath import Probe, ReplyCache
from netlab.proto.dns_wire import Rcode, RemoteProtocolError, Transport, parse_message_untrusted

__all__ = ["CheckedServer", "FreshReplies"]

REPLAY_FOR = 1.0  # seconds a kept reply is replayed before it is renewed
REFRESH_WAIT = 0.5  # seconds the stale reply stands in while one query renews it


@dataclass(slots=True)
class _Freshness:
    renew_at: float  # after this, one query renews the reply
    expires: float  # the smallest TTL inside runs out: never replayed after this
    renewing_since: float | None = None


class FreshReplies(ReplyCache):
    """A reply cache whose entries age; see the module docstring."""

    def __init__(
        self,
        max_entries: int,
        *,
        our_payload: int,
        clock: Callable[[], float],
        replay_for: float = REPLAY_FOR,
        refresh_wait: float = REFRESH_WAIT,
    ) -> None:
        super().__init__(max_entries, our_payload=our_payload)
        self._clock = clock
        self.replay_for = replay_for
        self.refresh_wait = refresh_wait
        self._fresh: dict[bytes, _Freshness] = {}
        self.renewals = 0

    def replay(self, probe: Probe, data: bytes) -> bytes | None:
        fresh = self._fresh.get(probe.key)
        now = self._clock()
        if fresh is None or now >= fresh.expires:
            self.misses += 1
            return None
        if now >= fresh.renew_at:
            since = fresh.renewing_since
            if since is None or now - since >= self.refresh_wait:
                # This query goes the whole way and renews the reply for everyone.
                fresh.renewing_since = now
                self.renewals += 1
                self.misses += 1
                return None
        return super().replay(probe, data)

    def put(self, probe: Probe, reply: bytes) -> None:
        if len(reply) < 4 or reply[3] & 0x0F not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            return
        try:
            message = parse_message_untrusted(reply)
        except RemoteProtocolError:
            return
        ttl = min((rr.ttl for rr in (*message.rr, *message.auth)), default=self.replay_for)
        if ttl <= 0:
            return
        if len(self._fresh) >= 2 * self.max_entries:
            # The parent forgets its oldest replies; forget how fresh they were with them.
            self._fresh = {k: f for k, f in self._fresh.items() if k in self._replies}
        now = self._clock()
        self._fresh[probe.key] = _Freshness(now + min(self.replay_for, ttl), now + ttl)
        super().put(probe, reply)

    def clear(self) -> None:
        super().clear()
        self._fresh.clear()


class CheckedServer(DnsServer):
    """The DNS server core with an access check before its (ageing) reply cache.

    Args:
        handler: answers what the cache cannot (and refuses whom ``admit`` refuses).
        admit: is this client address served at all?
        settings: ``replay_cache`` sizes a :class:`FreshReplies`.
    """

    def __init__(
        self,
        handler: DnsHandler,
        admit: Callable[[str], bool],
        settings: DnsServerSettings,
        *,
        clock: Callable[[], float],
        name: str = "dns",
    ) -> None:
        super().__init__(handler, replace(settings, replay_cache=0), name=name)
        self.admit = admit
        self.fresh: FreshReplies | None = None
        if settings.replay_cache:
            self.fresh = FreshReplies(settings.replay_cache, our_payload=settings.udp_payload, clock=clock)
            self.cache = self.fresh

    def replay(self, data: bytes, client: Addr, transport: Transport) -> tuple[bytes | None, Probe | None]:
        if not self.admit(client[0]):
            return None, None  # the handler refuses it, and nothing refused is ever kept
        return super().replay(data, client, transport)
