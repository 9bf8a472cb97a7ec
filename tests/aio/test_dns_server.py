"""The DNS server core (netlab.aio.dns_server) over in-memory datagrams and streams."""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from dnslib import QTYPE, RR, TXT, A, DNSRecord

from netlab.aio.dns_server import DnsQuery, DnsServer, DnsServerSettings
from netlab.aio.endpoint import MemoryEndpoint, MemoryNetwork
from netlab.proto.dns_wire import Transport, make_reply, parse_message_untrusted
from tests.proto.dns_packets import malformed_packets, opt_rr, query_bytes


class Handler:
    """Answers every A question with 127.0.0.1; ``big.test`` TXT with 30 long strings;
    ``slow.test`` after 5 s; ``boom.test`` by raising; ``silent.test`` with nothing."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, query: DnsQuery) -> DNSRecord | None:
        self.calls += 1
        name = str(query.question.qname).lower()
        reply = make_reply(query.message)
        reply.header.aa = 1
        if name == "boom.test.":
            raise RuntimeError("a bug")
        if name == "silent.test.":
            return None
        if name == "slow.test.":
            await trio.sleep(5)
        if name == "big.test.":
            for i in range(30):
                reply.add_answer(RR("big.test", QTYPE.TXT, rdata=TXT(f"{i:02d}" + "x" * 100), ttl=60))
            return reply
        reply.add_answer(RR(query.question.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
        return reply


@pytest.fixture
async def udp() -> AsyncIterator[tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork]]:
    handler = Handler()
    server = DnsServer(handler, DnsServerSettings(udp_queue=20_000))
    async with MemoryNetwork(queue_size=20_000) as net, trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_udp, net.endpoint("127.0.0.53", 53))
        yield server, handler, net.endpoint("127.0.0.1"), net
        nursery.cancel_scope.cancel()


async def ask(client: MemoryEndpoint, packet: bytes) -> DNSRecord:
    await client.sendto(packet, ("127.0.0.53", 53))
    with trio.fail_after(5):
        data, _ = await client.recvfrom()
    return DNSRecord.parse(data)


async def test_udp_answer_with_edns(udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork]) -> None:
    server, _, client, _ = udp
    reply = await ask(client, query_bytes("www.shop.test", id=7, edns=opt_rr(udp=4096)))
    assert (reply.header.id, reply.header.qr, reply.header.rcode) == (7, 1, 0)
    assert str(reply.rr[0].rdata) == "127.0.0.1"
    (opt,) = reply.ar
    assert (opt.rtype, opt.rclass) == (41, 1232)
    plain = await ask(client, query_bytes("www.shop.test", id=8))
    assert plain.ar == []
    assert server.counters.udp_queries == 2


async def test_udp_truncation_then_tcp(udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork]) -> None:
    server, _, client, _ = udp
    reply = await ask(client, query_bytes("big.test", 16, edns=opt_rr(udp=4096)))
    assert reply.header.tc == 1
    assert reply.q.qname == "big.test"
    assert reply.rr == []
    assert server.counters.truncated == 1
    wire = await server.answer(
        query_bytes("big.test", 16, edns=opt_rr(udp=4096)), ("127.0.0.1", 1), Transport.TCP
    )
    assert wire is not None
    full = DNSRecord.parse(wire)
    assert full.header.tc == 0
    assert len(full.rr) == 30


async def test_badvers_formerr_notimp(udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork]) -> None:
    server, handler, client, _ = udp
    badvers = await ask(client, query_bytes("a.test", edns=opt_rr(version=1)))
    assert (badvers.header.rcode, badvers.ar[0].edns_rcode, badvers.ar[0].edns_ver) == (0, 1, 0)
    formerr = await ask(client, query_bytes("a.test")[:-2])
    assert formerr.header.rcode == 1
    notimp = await ask(client, b"\x12\x34\x28\x00" + query_bytes("a.test")[4:])
    assert notimp.header.rcode == 4
    assert handler.calls == 0
    assert server.counters.errors == {"BADVERS": 1, "FORMERR": 1, "NOTIMP": 1}


async def test_handler_failure_is_servfail(
    udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork],
) -> None:
    server, _, client, _ = udp
    assert (await ask(client, query_bytes("boom.test"))).header.rcode == 2
    assert (await ask(client, query_bytes("fine.test"))).header.rcode == 0
    assert server.counters.handler_failures == 1


async def test_ten_thousand_bad_packets_then_a_good_question(
    udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork],
) -> None:
    server, _, client, net = udp
    packets = malformed_packets(random.Random(4))
    assert len(packets) == 10_000
    for packet in packets:
        await client.sendto(packet, ("127.0.0.53", 53))
    await client.sendto(query_bytes("after.test", id=0xABCD), ("127.0.0.53", 53))
    replies = 0
    with trio.fail_after(30):
        while True:  # the replies to the bad packets come first
            data, _ = await client.recvfrom()
            reply = parse_message_untrusted(data)  # every reply is a well-formed message
            assert reply.header.qr == 1
            if reply.header.id == 0xABCD:
                break
            replies += 1
    assert str(reply.rr[0].rdata) == "127.0.0.1"
    assert replies == server.counters.replies - 1
    c = server.counters
    assert net.dropped_full == 0
    assert c.dropped_full == 0
    assert c.udp_queries + c.dropped_malformed + c.dropped_responses == 10_001
    assert c.dropped_malformed > 0
    assert c.dropped_responses > 0
    assert c.errors["FORMERR"] > 1000
    assert c.handler_failures == 0


async def test_replay_cache_answers_without_the_handler() -> None:
    handler = Handler()
    server = DnsServer(handler, DnsServerSettings(replay_cache=100))
    client = ("127.0.0.1", 1)

    async def serve(packet: bytes) -> bytes | None:
        wire, probe = server.replay(packet, client, Transport.UDP)
        return wire if wire is not None else await server.answer(packet, client, Transport.UDP, probe)

    first = await serve(query_bytes("www.shop.test", id=1))
    again = await serve(query_bytes("WWW.shop.test", id=2))
    assert first is not None
    assert again is not None
    assert DNSRecord.parse(again).header.id == 2
    assert handler.calls == 1
    assert server.counters.replayed == 1
    assert server.counters.udp_queries == 2
    assert (await serve(query_bytes("boom.test"))) is not None
    assert (await serve(query_bytes("boom.test"))) is not None
    assert handler.calls == 3  # a failure is never kept


async def test_query_log_line(caplog: pytest.LogCaptureFixture) -> None:
    server = DnsServer(Handler())
    with caplog.at_level(logging.INFO, logger="netlab.access.dns"):
        await server.answer(query_bytes("www.shop.test"), ("127.0.0.9", 5353), Transport.UDP)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "netlab.access.dns"]
    assert line.startswith("127.0.0.9#5353 udp www.shop.test. IN A -> NOERROR aa 1/0/0 ")


# -- TCP ---------------------------------------------------------------------------------------


def frame(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


async def read_frame(stream: trio.abc.Stream, buffer: bytearray) -> bytes | None:
    while len(buffer) < 2 or len(buffer) < 2 + struct.unpack_from("!H", buffer)[0]:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    (length,) = struct.unpack_from("!H", buffer)
    message = bytes(buffer[2 : 2 + length])
    del buffer[: 2 + length]
    return message


async def test_tcp_pipelined_answers_come_out_of_order(autojump_clock: trio.testing.MockClock) -> None:
    server = DnsServer(Handler())
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, server_side, ("127.0.0.1", 1))
        await client.send_all(
            frame(query_bytes("slow.test", id=1))
            + frame(query_bytes("a.test", id=2))
            + frame(query_bytes("b.test", id=3))
        )
        buffer = bytearray()
        ids = []
        for _ in range(3):
            message = await read_frame(client, buffer)
            assert message is not None
            ids.append(DNSRecord.parse(message).header.id)
        assert ids == [2, 3, 1]
        assert trio.current_time() == pytest.approx(5.0)
        await client.send_eof()
        assert await read_frame(client, buffer) is None
    assert server.counters.tcp_queries == 3


async def test_tcp_idle_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    server = DnsServer(Handler(), DnsServerSettings(tcp_idle_timeout=10.0))
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, server_side, ("127.0.0.1", 1))
        await client.send_all(frame(query_bytes("a.test", id=1)))
        buffer = bytearray()
        assert await read_frame(client, buffer) is not None
        start = trio.current_time()
        assert await read_frame(client, buffer) is None
    assert trio.current_time() - start == pytest.approx(10.0)
    assert server.counters.tcp_idle_closed == 1


async def test_tcp_client_that_sends_nothing(autojump_clock: trio.testing.MockClock) -> None:
    server = DnsServer(Handler(), DnsServerSettings(tcp_idle_timeout=3.0))
    _, server_side = trio.testing.memory_stream_pair()
    await server.handle_connection(server_side, ("127.0.0.1", 1))
    assert trio.current_time() == pytest.approx(3.0)
    assert server.counters.tcp_idle_closed == 1


@pytest.mark.parametrize(
    ("payload", "eof"),
    [(b"\xff\xff" + b"x" * 100, False), (b"\x00\x40" + b"x" * 10, True)],
    ids=["oversized-length", "eof-inside-message"],
)
async def test_tcp_bad_frames_close_the_connection(
    autojump_clock: trio.testing.MockClock, payload: bytes, eof: bool
) -> None:
    server = DnsServer(Handler())
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, server_side, ("127.0.0.1", 1))
        await client.send_all(payload)
        if eof:
            await client.send_eof()
        assert await read_frame(client, bytearray()) is None
    assert trio.current_time() < 1.0
    assert server.counters.tcp_bad_frames == 1
    # ...and the next connection is served.
    client, server_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, server_side, ("127.0.0.1", 2))
        await client.send_all(frame(query_bytes("a.test", id=9)))
        message = await read_frame(client, bytearray())
        assert message is not None
        assert DNSRecord.parse(message).header.id == 9
        await client.send_eof()


async def test_tcp_connection_cap(autojump_clock: trio.testing.MockClock) -> None:
    server = DnsServer(Handler(), DnsServerSettings(max_tcp_connections=1))
    first_client, first = trio.testing.memory_stream_pair()
    second_client, second = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._on_connection, first)
        await trio.testing.wait_all_tasks_blocked()
        await server._on_connection(second)
        assert server.counters.tcp_rejected == 1
        assert await second_client.receive_some(10) == b""  # closed at once
        await first_client.send_eof()
    assert server.counters.tcp_connections == 1


async def test_silent_handler_sends_nothing(
    udp: tuple[DnsServer, Handler, MemoryEndpoint, MemoryNetwork],
) -> None:
    server, _, client, _ = udp
    await client.sendto(query_bytes("silent.test"), ("127.0.0.53", 53))
    reply = await ask(client, query_bytes("after.test", id=5))
    assert reply.header.id == 5
    assert server.counters.unanswered == 1
