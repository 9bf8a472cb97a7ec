"""Kept replies that age: renewed by one query, stale ones standing in meanwhile, never past a TTL."""

from __future__ import annotations

import dnslib

from netlab.aio.dns_fresh import FreshReplies
from netlab.proto.dns_wire import Transport

QUERY = dnslib.DNSRecord.question("www.shop.test", "A")


def _reply(ttl: int, rcode: int = 0) -> bytes:
    reply = QUERY.reply()
    reply.header.rcode = rcode
    if rcode == 0:
        reply.add_answer(*dnslib.RR.fromZone(f"www.shop.test. {ttl} A 127.0.0.80"))
    return bytes(reply.pack())


def _cache(now: list[float]) -> FreshReplies:
    return FreshReplies(10, our_payload=1232, clock=lambda: now[0], replay_for=1.0, refresh_wait=0.5)


def test_one_query_renews_a_stale_reply_while_the_others_get_it() -> None:
    now = [0.0]
    cache = _cache(now)
    data = bytes(QUERY.pack())
    probe = cache.probe(data, Transport.UDP)
    assert probe is not None
    cache.put(probe, _reply(300))
    now[0] = 0.9
    assert cache.replay(probe, data) is not None
    now[0] = 1.1
    assert cache.replay(probe, data) is None  # this one renews it
    assert cache.replay(probe, data) is not None  # the others get the stale reply meanwhile
    now[0] = 1.7
    assert cache.replay(probe, data) is None  # the renewal never came: another query tries
    cache.put(probe, _reply(299))
    assert cache.replay(probe, data) is not None
    assert cache.renewals == 2


def test_never_replayed_past_the_smallest_ttl() -> None:
    now = [0.0]
    cache = _cache(now)
    data = bytes(QUERY.pack())
    probe = cache.probe(data, Transport.UDP)
    assert probe is not None
    cache.put(probe, _reply(1))
    now[0] = 1.2
    assert cache.replay(probe, data) is None
    assert cache.replay(probe, data) is None  # expired outright: no stale stand-in


def test_failures_and_zero_ttls_are_not_kept() -> None:
    now = [0.0]
    cache = _cache(now)
    data = bytes(QUERY.pack())
    probe = cache.probe(data, Transport.UDP)
    assert probe is not None
    cache.put(probe, _reply(300, rcode=dnslib.RCODE.SERVFAIL))
    cache.put(probe, _reply(300, rcode=dnslib.RCODE.REFUSED))
    cache.put(probe, _reply(0))
    assert len(cache) == 0
    assert cache.replay(probe, data) is None
