"""The resolver's cache: TTLs, ranks, negative answers, delegations and the LRU bound."""

from __future__ import annotations

import dnslib
import pytest

from netlab.proto.dns_cache import DnsCache, HitKind, Rank
from netlab.proto.dns_rrset import RRset, group_rrsets, name_of

A, NS, CNAME, MX = dnslib.QTYPE.A, dnslib.QTYPE.NS, dnslib.QTYPE.CNAME, dnslib.QTYPE.MX


def rrset(text: str) -> RRset:
    (only,) = group_rrsets(dnslib.RR.fromZone(text)).values()
    return only


SOA = rrset("shop.test. 3600 SOA ns1.shop.test. host.shop.test. 1 2 3 4 300")


def test_ttl_counts_down_and_expires() -> None:
    cache = DnsCache()
    cache.store(rrset("www.shop.test. 60 A 127.0.0.80"), Rank.ANSWER, 100.0)
    hit = cache.lookup(name_of("www.shop.test"), A, 130.5)
    assert hit is not None and hit.kind is HitKind.ANSWER and hit.data is not None
    assert [rr.ttl for rr in hit.data.records(130.5)] == [30]
    assert cache.lookup(name_of("www.shop.test"), A, 160.0) is None
    assert len(cache) == 0  # dropped when met


def test_ttls_are_capped_and_zero_is_not_kept() -> None:
    cache = DnsCache(max_ttl=100)
    timed = cache.store(rrset("www.shop.test. 86400 A 127.0.0.80"), Rank.ANSWER, 0.0)
    assert timed.expires == 100.0
    cache.store(rrset("now.shop.test. 0 A 127.0.0.81"), Rank.ANSWER, 0.0)
    assert cache.lookup(name_of("now.shop.test"), A, 0.0) is None


def test_lower_ranks_never_replace_live_higher_ones_nor_answer_clients() -> None:
    cache = DnsCache()
    cache.store(rrset("ns1.shop.test. 3600 A 127.0.0.10"), Rank.ANSWER, 0.0)
    cache.store(rrset("ns1.shop.test. 3600 A 6.6.6.6"), Rank.GLUE, 1.0)
    assert cache.addresses(name_of("ns1.shop.test"), (A,), 2.0) == ["127.0.0.10"]
    assert cache.stats.kept_better == 1
    cache.store(rrset("ns2.shop.test. 3600 A 127.0.0.11"), Rank.GLUE, 0.0)
    assert cache.lookup(name_of("ns2.shop.test"), A, 1.0) is None  # glue is not an answer
    assert cache.addresses(name_of("ns2.shop.test"), (A,), 1.0) == ["127.0.0.11"]  # but finds servers


@pytest.mark.parametrize(("rtype", "other_type_hit"), [(None, True), (A, False)])
def test_negative_answers_last_for_the_soa_minimum(rtype: int | None, other_type_hit: bool) -> None:
    cache = DnsCache()
    soa = cache.store_negative(name_of("nope.shop.test"), rtype, SOA, 10.0)
    assert soa is not None and soa.expires == 310.0  # min(3600, 300)
    hit = cache.lookup(name_of("nope.shop.test"), A, 20.0)
    assert hit is not None
    assert hit.kind is (HitKind.NXDOMAIN if rtype is None else HitKind.NODATA)
    assert (cache.lookup(name_of("nope.shop.test"), MX, 20.0) is not None) == other_type_hit
    assert cache.lookup(name_of("nope.shop.test"), A, 310.0) is None


def test_negative_ttl_cap_and_no_soa_no_caching() -> None:
    cache = DnsCache(max_negative_ttl=60)
    soa = cache.store_negative(name_of("nope.shop.test"), None, SOA, 0.0)
    assert soa is not None and soa.expires == 60.0
    assert cache.store_negative(name_of("gone.shop.test"), None, None, 0.0) is None
    assert cache.lookup(name_of("gone.shop.test"), A, 0.0) is None


def test_a_name_that_turns_up_ends_its_name_error() -> None:
    cache = DnsCache()
    cache.store_negative(name_of("new.shop.test"), None, SOA, 0.0)
    cache.store(rrset("new.shop.test. 60 A 127.0.0.90"), Rank.ANSWER, 1.0)
    hit = cache.lookup(name_of("new.shop.test"), A, 2.0)
    assert hit is not None and hit.kind is HitKind.ANSWER


def test_cname_is_followed_with_loop_detection() -> None:
    cache = DnsCache()
    cache.store(rrset("a.shop.test. 60 CNAME b.shop.test."), Rank.ANSWER, 0.0)
    cache.store(rrset("b.shop.test. 60 CNAME a.shop.test."), Rank.ANSWER, 0.0)
    chain, _hit, last, ok = cache.follow(name_of("a.shop.test"), A, {name_of("a.shop.test")}, 10, 1.0)
    assert (len(chain), last, ok) == (2, name_of("a.shop.test"), False)


def test_closest_delegation() -> None:
    cache = DnsCache()
    cache.store(rrset("test. 86400 NS ns1.nic.test."), Rank.REFERRAL, 0.0)
    cache.store(rrset("shop.test. 86400 NS ns1.shop.test."), Rank.REFERRAL, 0.0)
    found = cache.delegation(name_of("a.b.www.shop.test"), 1.0)
    assert found is not None and found.name == name_of("shop.test")
    found = cache.delegation(name_of("alpha.test"), 1.0)
    assert found is not None and found.name == name_of("test")
    assert cache.delegation(name_of("example"), 1.0) is None


def test_lru_bound_evicts_the_least_recently_used() -> None:
    cache = DnsCache(max_entries=2)
    cache.store(rrset("a.shop.test. 60 A 127.0.0.1"), Rank.ANSWER, 0.0)
    cache.store(rrset("b.shop.test. 60 A 127.0.0.2"), Rank.ANSWER, 0.0)
    assert cache.lookup(name_of("a.shop.test"), A, 1.0) is not None  # a is now the most recent
    cache.store(rrset("c.shop.test. 60 A 127.0.0.3"), Rank.ANSWER, 1.0)
    assert len(cache) == 2
    assert cache.lookup(name_of("b.shop.test"), A, 1.0) is None
    assert cache.lookup(name_of("a.shop.test"), A, 1.0) is not None
    assert cache.stats.evicted == 1


def test_disabled_cache_keeps_nothing_but_still_times_answers() -> None:
    cache = DnsCache(0)
    timed = cache.store(rrset("a.shop.test. 60 A 127.0.0.1"), Rank.ANSWER, 5.0)
    assert timed.expires == 65.0
    assert len(cache) == 0
