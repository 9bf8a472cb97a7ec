"""A discrete-event network for pairs of TFTP machines, in virtual time.

Each datagram gets a latency, may be lost or duplicated, and may be held back long enough to
arrive after later ones; the clock jumps from one arrival or machine deadline to the next.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from netlab.proto.tftp_options import ServerLimits, TransferOptions, negotiate_untrusted
from netlab.proto.tftp_packet import Request, decode_packet_untrusted
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.proto.tftp_transfer import FinalBlockReceived

Machine = TftpSender | TftpReceiver
LATENCY = 0.001  # seconds, each way


@dataclass
class Network:
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance a datagram is held back by up to 20 ms
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[tuple[str, object]] = field(default_factory=list)

    def fates(self) -> list[float]:
        """The delays at which copies of one datagram arrive (none: lost)."""
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [LATENCY + self._holdback() for _ in range(copies)]

    def _holdback(self) -> float:
        return self.rng.uniform(0, 0.02) if self.rng.random() < self.reorder else 0.0


def feed_all(sender: TftpSender, data: bytes, *, chunk: int = 3000) -> int:
    """Feed ``data`` in pieces whenever the sender asks; returns the new offset."""
    offset = 0
    while sender.wants_data:
        piece = data[offset : offset + chunk]
        if piece:
            sender.feed(piece)
            offset += len(piece)
        else:
            sender.end_of_data()
    return offset


def simulate(
    client: Machine, server: Machine, data: bytes, net: Network | None = None, *, limit: float = 10_000.0
) -> bytes:
    """Run both machines until both are closed; returns what the receiver stored."""
    net = net or Network()
    sender = client if isinstance(client, TftpSender) else server
    receiver = server if sender is client else client
    assert isinstance(sender, TftpSender)
    assert isinstance(receiver, TftpReceiver)
    names = {id(client): "client", id(server): "server"}
    peer = {id(client): server, id(server): client}
    queue: list[tuple[float, int, Machine, bytes]] = []
    order = itertools.count()
    now, offset, stored = 0.0, 0, bytearray()

    def pump(m: Machine) -> None:
        nonlocal offset
        if m is sender:
            offset += feed_all(sender, data[offset:])
        while (event := m.next_event()) is not None:
            net.events.append((names[id(m)], event))
            if isinstance(event, FinalBlockReceived):
                stored.extend(receiver.take_data())
                receiver.commit(now)
        if m is receiver:
            stored.extend(receiver.take_data())
        for datagram in m.datagrams_to_send(now):
            net.sent.append((names[id(m)], datagram))
            if datagram[:2] in (b"\0\1", b"\0\2"):
                continue  # requests go to the server's request socket, which already answered
            for delay in net.fates():
                heapq.heappush(queue, (now + delay, next(order), peer[id(m)], datagram))

    pump(client)
    pump(server)
    while not (client.closed and server.closed) and now < limit:
        times = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if queue:
            times.append(queue[0][0])
        if not times:
            break
        now = max(now, min(times))
        while queue and queue[0][0] <= now:
            _, _, target, datagram = heapq.heappop(queue)
            target.receive_datagram(datagram, now)
        for m in (client, server):
            m.handle_timer(now)
        pump(client)
        pump(server)
    return bytes(stored)


def _negotiate(machine: Machine, size: int | None) -> tuple[dict[str, str], TransferOptions]:
    """What a server makes of the request ``machine`` is about to send (left unsent)."""
    request = decode_packet_untrusted(machine._out[0])
    assert isinstance(request, Request)
    return negotiate_untrusted(request, ServerLimits(), file_size=size)


def read_pair(options: dict[str, str], size: int) -> tuple[TftpReceiver, TftpSender]:
    """A client reading a file of ``size`` bytes, and the server answering its RRQ."""
    client = TftpReceiver.client("f", "octet", options)
    oack, params = _negotiate(client, size)
    return client, TftpSender.server(params, oack)


def write_pair(options: dict[str, str], *, max_size: int | None = None) -> tuple[TftpSender, TftpReceiver]:
    """A client writing a file, and the server answering its WRQ."""
    client = TftpSender.client("f", "octet", options)
    oack, params = _negotiate(client, None)
    return client, TftpReceiver.server(params, oack, max_size=max_size)
