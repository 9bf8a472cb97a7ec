"""A small scripted DNS hierarchy for resolver machine tests.

.                 root, served at ROOT
test.             TLD at TEST, delegating:
  shop.test.        with glue (SHOP): www, mail (MX), web -> www (CNAME), deep.a.b.c (deep name)
  alias.test.       with glue (ALIAS): www -> www.shop.test. (CNAME across zones), loop1 <-> loop2
  glueless.test.    without glue: its server is ns.hosting.example.
  lame.test.        to LAME (answers REFUSED) and SHOP2 (a second, good server)
example.          TLD at EXAMPLE, delegating hosting.example. (HOSTING) with glue
"""

from __future__ import annotations

import random

from netlab.proto.dns_hints import RootHints
from netlab.proto.dns_resolve import Resolver, ResolverSettings
from tests.proto.dns_fakenet import FakeNet, Responder, serve, soa, zone

ROOT = ("198.51.100.1", 53)
TEST = ("198.51.100.2", 53)
EXAMPLE = ("198.51.100.3", 53)
SHOP = ("198.51.100.10", 53)
ALIAS = ("198.51.100.11", 53)
HOSTING = ("198.51.100.12", 53)
GLUELESS = ("198.51.100.13", 53)
LAME = ("198.51.100.14", 53)
SHOP2 = ("198.51.100.15", 53)

ROOT_ZONE = zone(
    ".",
    f"""
{soa(".")}
. 518400 NS a.root.
a.root. 518400 A {ROOT[0]}
test. 172800 NS ns1.test.
ns1.test. 172800 A {TEST[0]}
example. 172800 NS ns1.example.
ns1.example. 172800 A {EXAMPLE[0]}
""",
)

TEST_ZONE = zone(
    "test.",
    f"""
{soa("test.", minimum=900)}
test. 86400 NS ns1.test.
ns1.test. 86400 A {TEST[0]}
shop.test. 86400 NS ns1.shop.test.
ns1.shop.test. 86400 A {SHOP[0]}
alias.test. 86400 NS ns1.alias.test.
ns1.alias.test. 86400 A {ALIAS[0]}
glueless.test. 86400 NS ns.hosting.example.
lame.test. 86400 NS ns1.lame.test.
lame.test. 86400 NS ns2.lame.test.
ns1.lame.test. 86400 A {LAME[0]}
ns2.lame.test. 86400 A {SHOP2[0]}
""",
)

EXAMPLE_ZONE = zone(
    "example.",
    f"""
{soa("example.")}
example. 86400 NS ns1.example.
ns1.example. 86400 A {EXAMPLE[0]}
hosting.example. 86400 NS ns1.hosting.example.
ns1.hosting.example. 86400 A {HOSTING[0]}
""",
)

SHOP_ZONE = zone(
    "shop.test.",
    f"""
{soa("shop.test.", minimum=300)}
shop.test. 3600 NS ns1.shop.test.
ns1.shop.test. 3600 A {SHOP[0]}
www.shop.test. 300 A 127.0.0.10
www.shop.test. 300 A 127.0.0.11
mail.shop.test. 3600 MX 10 mx.shop.test.
mx.shop.test. 3600 A 127.0.0.25
web.shop.test. 600 CNAME www.shop.test.
deep.a.b.c.shop.test. 60 TXT "deep"
""",
)

ALIAS_ZONE = zone(
    "alias.test.",
    f"""
{soa("alias.test.")}
alias.test. 3600 NS ns1.alias.test.
ns1.alias.test. 3600 A {ALIAS[0]}
www.alias.test. 120 CNAME www.shop.test.
loop1.alias.test. 120 CNAME loop2.alias.test.
loop2.alias.test. 120 CNAME loop1.alias.test.
""",
)

HOSTING_ZONE = zone(
    "hosting.example.",
    f"""
{soa("hosting.example.")}
hosting.example. 3600 NS ns1.hosting.example.
ns1.hosting.example. 3600 A {HOSTING[0]}
ns.hosting.example. 3600 A {GLUELESS[0]}
""",
)

GLUELESS_ZONE = zone(
    "glueless.test.",
    f"""
{soa("glueless.test.")}
glueless.test. 3600 NS ns.hosting.example.
www.glueless.test. 3600 A 127.0.0.13
""",
)

LAME_ZONE = zone(
    "lame.test.",
    f"""
{soa("lame.test.")}
lame.test. 3600 NS ns1.lame.test.
lame.test. 3600 NS ns2.lame.test.
www.lame.test. 3600 A 127.0.0.14
""",
)


def servers() -> dict[tuple[str, int], Responder]:
    return {
        ROOT: serve(ROOT_ZONE),
        TEST: serve(TEST_ZONE),
        EXAMPLE: serve(EXAMPLE_ZONE),
        SHOP: serve(SHOP_ZONE),
        ALIAS: serve(ALIAS_ZONE),
        HOSTING: serve(HOSTING_ZONE),
        GLUELESS: serve(GLUELESS_ZONE),
        LAME: serve(),  # serves nothing: REFUSED for everything
        SHOP2: serve(LAME_ZONE),
    }


HINTS = RootHints.from_addresses([ROOT[0]], names=["a.root."])


def make(seed: int = 1, **settings: object) -> tuple[Resolver, FakeNet]:
    resolver = Resolver(HINTS, random.Random(seed), ResolverSettings(**settings))  # type: ignore[arg-type]
    return resolver, FakeNet(servers())
