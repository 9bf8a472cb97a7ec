"""A stub DNS client: how the proxy and the mail relay look names up through a recursive resolver.

A stub (RFC 1034 section 5.3.1) sends one recursive question to one configured resolver and
trusts its answer, so its only defences are the ones that stop off-path spoofing (RFC 5452
section 9): a fresh random ID and a fresh random source port for every query, and an answer
counts only if its ID, source address, source port and question all match.  A truncated (TC)
answer is asked again over TCP (RFC 7766 section 5).  Timeouts are retried a bounded number of
times with a doubling wait.
"""

from __future__ import annotations

import logging
import random
import struct
from dataclasses import dataclass

import dnslib
import trio

from netlab.addr import parse_hostport
from netlab.aio.endpoint import Addr, open_udp_endpoint
from netlab.config import NetlabConfig

__all__ = ["DnsLookupError", "StubAnswer", "StubResolver", "stub_for"]

log = logging.getLogger(__name__)

_UDP_PAYLOAD = 1232  # bytes; the EDNS0 size that avoids IP fragmentation (DNS flag day 2020)


class DnsLookupError(Exception):
    """The lookup failed: ``rcode`` is the resolver's RCODE name, or "TIMEOUT"."""

    def __init__(self, name: str, rdtype: str, rcode: str) -> None:
        super().__init__(f"{name} {rdtype}: {rcode}")
        self.name = name
        self.rdtype = rdtype
        self.rcode = rcode


@dataclass(frozen=True)
class StubAnswer:
    """The records of the asked type at the end of any CNAME chain, and the chain's TTL."""

    name: str
    rdtype: str
    records: tuple[str, ...]  # presentation form of each rdata, e.g. "192.0.2.1", "10 mx.example."
    ttl: int


class StubResolver:
    """Asks one recursive resolver (``server``) and validates what comes back.

    Args:
        server: the resolver's address.
        timeout: seconds to wait for the first try; doubled on each retry.
        attempts: how many times a question is sent over UDP before giving up.
        rng: source of IDs; ``random.SystemRandom()`` unless a test passes a seeded one.
    """

    def __init__(
        self,
        server: Addr,
        *,
        timeout: float = 2.0,
        attempts: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.timeout = timeout
        self.attempts = attempts
        self._rng = rng or random.SystemRandom()

    async def query(self, name: str, rdtype: str) -> StubAnswer:
        """Ask for ``name``/``rdtype``; NXDOMAIN and NODATA give an answer with no records.

        Raises:
            DnsLookupError: SERVFAIL, REFUSED or another error RCODE, or no answer in time.
        """
        qtype = getattr(dnslib.QTYPE, rdtype.upper())
        reply = await self._exchange(dnslib.DNSRecord.question(name, rdtype.upper()), name, rdtype)
        rcode = dnslib.RCODE.get(reply.header.rcode)
        if rcode not in ("NOERROR", "NXDOMAIN"):
            raise DnsLookupError(name, rdtype, str(rcode))
        return _final_records(reply, name, qtype, rdtype.upper())

    async def resolve_addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of ``host`` (empty if it has none)."""
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            out += (await self.query(host, rdtype)).records
        return out

    async def resolve_mx(self, domain: str) -> list[tuple[int, str]]:
        """``(preference, exchange)`` pairs sorted by preference (RFC 5321 section 5.1).

        An empty list means the domain has no MX; the caller then falls back to its address.
        """
        answer = await self.query(domain, "MX")
        pairs = []
        for text in answer.records:
            pref, exchange = text.split(None, 1)
            pairs.append((int(pref), exchange.rstrip(".") or "."))
        return sorted(pairs)

    async def _exchange(self, question: dnslib.DNSRecord, name: str, rdtype: str) -> dnslib.DNSRecord:
        question.add_ar(dnslib.EDNS0(udp_len=_UDP_PAYLOAD))
        timeout = self.timeout
        for _ in range(self.attempts):
            question.header.id = self._rng.randrange(1 << 16)
            with trio.move_on_after(timeout):
                reply = await self._udp_exchange(question)
                if reply.header.tc:
                    reply = await self._tcp_exchange(question)
                return reply
            timeout *= 2
        raise DnsLookupError(name, rdtype, "TIMEOUT")

    async def _udp_exchange(self, question: dnslib.DNSRecord) -> dnslib.DNSRecord:
        # A new socket per query gives a fresh random source port from the kernel.
        ep = await open_udp_endpoint("::" if ":" in self.server[0] else "0.0.0.0", 0)
        try:
            await ep.sendto(question.pack(), self.server)
            while True:
                data, peer = await ep.recvfrom()
                reply = _matching_reply_untrusted(data, question)
                if peer == self.server and reply is not None:
                    return reply
                log.warning("dropped a DNS answer that does not match our question from %s", peer)
        finally:
            await ep.aclose()

    async def _tcp_exchange(self, question: dnslib.DNSRecord) -> dnslib.DNSRecord:
        stream = await trio.open_tcp_stream(*self.server)
        async with stream:
            wire = question.pack()
            await stream.send_all(struct.pack("!H", len(wire)) + wire)
            buf = bytearray()
            while len(buf) < 2 or len(buf) < 2 + struct.unpack_from("!H", buf)[0]:
                chunk = await stream.receive_some(65537)
                if not chunk:
                    raise trio.BrokenResourceError("resolver closed the TCP connection")
                buf += chunk
            reply = _matching_reply_untrusted(bytes(buf[2:]), question)
            if reply is None:
                raise trio.BrokenResourceError("resolver sent a mismatched TCP answer")
            return reply


def stub_for(config: NetlabConfig, *, timeout: float = 2.0, attempts: int = 3) -> StubResolver:
    """A stub asking the suite's own resolver, where ``[resolver] listen`` says it answers."""
    host, port = parse_hostport(config.resolver.listen, default_port=53)
    return StubResolver((host, port), timeout=timeout, attempts=attempts)


def _matching_reply_untrusted(data: bytes, question: dnslib.DNSRecord) -> dnslib.DNSRecord | None:
    """The parsed reply if it answers ``question`` (ID, QR, question section), else None."""
    try:
        reply = dnslib.DNSRecord.parse(data)
    except (dnslib.DNSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None
    if reply.header.id != question.header.id or not reply.header.qr:
        return None
    if len(reply.questions) != 1:
        return None
    q, asked = reply.questions[0], question.questions[0]
    if q.qtype != asked.qtype or q.qclass != asked.qclass or str(q.qname).lower() != str(asked.qname).lower():
        return None
    return reply


def _final_records(reply: dnslib.DNSRecord, name: str, qtype: int, rdtype: str) -> StubAnswer:
    """Follow the CNAME chain in the answer section from ``name`` to the records asked for."""
    owner = dnslib.DNSLabel(name)
    ttl = 2**31 - 1
    for _ in range(16):  # a chain longer than this is a loop or an abuse
        cname = next((rr for rr in reply.rr if rr.rtype == dnslib.QTYPE.CNAME and rr.rname == owner), None)
        if cname is None:
            break
        ttl = min(ttl, cname.ttl)
        owner = cname.rdata.label
    records = [rr for rr in reply.rr if rr.rtype == qtype and rr.rname == owner]
    ttl = min([ttl, *(rr.ttl for rr in records)]) if records else 0
    return StubAnswer(str(owner).rstrip(".") or ".", rdtype, tuple(str(rr.rdata) for rr in records), ttl)
