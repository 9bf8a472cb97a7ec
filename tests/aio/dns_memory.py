"""Authoritative servers for driver tests: UDP on a MemoryNetwork, TCP over memory streams."""

from __future__ import annotations

import dnslib
import trio
import trio.testing

from netlab.aio.dns_iterate import QuerySocket
from netlab.aio.endpoint import Addr, MemoryEndpoint, MemoryNetwork
from netlab.proto.dns_tcp import DnsStream, Message
from netlab.proto.dns_wire import Transport
from tests.proto.dns_fakenet import Responder

RESOLVER_HOST = "192.0.2.53"


class MemoryUpstream:
    """Authoritative servers on a MemoryNetwork (UDP) and over memory streams (TCP)."""

    def __init__(self, network: MemoryNetwork, nursery: trio.Nursery, servers: dict[Addr, Responder]) -> None:
        self.network = network
        self.nursery = nursery
        self.servers = servers
        self.sources: list[Addr] = []  # where each UDP query came from
        self.tcp_queries = 0
        for addr in servers:
            nursery.start_soon(self._serve_udp, network.endpoint(*addr))

    async def _serve_udp(self, ep: MemoryEndpoint) -> None:
        while True:
            data, peer = await ep.recvfrom()
            self.sources.append(peer)
            query = dnslib.DNSRecord.parse(data)
            for delay, reply, _src in self.servers[ep.local_address](query, Transport.UDP, ep.local_address):
                self.nursery.start_soon(self._later, ep, delay, reply, peer)

    async def _later(self, ep: MemoryEndpoint, delay: float, data: bytes, peer: Addr) -> None:
        await trio.sleep(delay)
        await ep.sendto(data, peer)

    def open_udp(self, server: Addr) -> QuerySocket:
        return _MemoryQuerySocket(self.network.endpoint(RESOLVER_HOST, 0), server)

    async def open_tcp(self, server: Addr) -> trio.abc.Stream:
        if server not in self.servers:
            raise ConnectionRefusedError(server)
        client, served = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve_tcp, served, server)
        return client

    async def _serve_tcp(self, stream: trio.abc.Stream, server: Addr) -> None:
        framer = DnsStream()
        while not isinstance(event := framer.next_event(), Message):
            framer.receive_data(await stream.receive_some(65536))
        self.tcp_queries += 1
        query = dnslib.DNSRecord.parse(event.data)
        for delay, reply, _src in self.servers[server](query, Transport.TCP, server):
            await trio.sleep(delay)
            await stream.send_all(framer.send(reply))


class _MemoryQuerySocket:
    """A query's own endpoint on the in-memory network."""

    def __init__(self, endpoint: MemoryEndpoint, server: Addr) -> None:
        self.endpoint = endpoint
        self.server = server

    def send(self, data: bytes) -> None:
        # MemoryEndpoint.sendto only checkpoints after handing the datagram to the network.
        self.endpoint._network._send(bytes(data), self.endpoint.local_address, self.server)

    async def receive(self) -> tuple[bytes, Addr]:
        return await self.endpoint.recvfrom()

    def close(self) -> None:
        self.endpoint._network._unbind(self.endpoint.local_address)
