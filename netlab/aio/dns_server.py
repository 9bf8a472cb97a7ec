"""The DNS server core: one trio loop serving UDP and TCP for every DNS server of the suite.

Strategy: the core knows DNS *transport* and nothing about answers.  A server is the core plus a
handler, ``async def handler(query: DnsQuery) -> DNSRecord | None`` (None: send nothing); the
authoritative server and the recursive resolver are two handlers.  For each message the core

1. drops what it cannot answer: fewer than 12 octets (no ID to reply to) and responses (QR set:
   answering them invites loops and reflection);
2. decodes strictly (``parse_message_untrusted``) and checks the query (``check_query``); a
   failure is answered with its RCODE: FORMERR, NOTIMP or BADVERS;
3. calls the handler; an exception there is a bug, logged and answered with SERVFAIL;
4. encodes the reply with our OPT record if the client sent one, in the size the client can
   take: 512 octets without EDNS, its EDNS size capped by ours (1232 by default) over UDP,
   65535 over TCP; a reply too large is truncated with TC set, keeping the question (RFC 2181
   section 9), so the client retries over TCP.

UDP (:mod:`netlab.aio.dns_udp`): DNS has no sessions, so instead of per-peer session tasks a
fixed pool of workers takes queries from one bounded channel; when it is full the query is
dropped and counted (the client retries).  TCP (RFC 7766): any number of queries per
connection, answered concurrently and written back as each is ready, so answers may come out
of order (section 6.2.1.1); at most ``max_tcp_inflight`` at a time per connection (then we stop
reading: back-pressure), a connection idle for ``tcp_idle_timeout`` seconds is closed (section
6.2.3), and at most ``max_tcp_connections`` are open at once.

A handler whose replies depend on the question alone (an authoritative server over fixed zones)
can turn on the reply cache (``replay_cache``, :mod:`netlab.proto.dns_fastpath`): a repeated
question is answered from the kept octets in the receive loop itself, with no decoding and no
task switch.  Every query writes one line to the ``netlab.access.<name>`` log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio
from dnslib import CLASS, QTYPE, DNSQuestion, DNSRecord

from netlab.aio import dns_udp
from netlab.aio.endpoint import Addr, DatagramEndpoint
from netlab.log import access_logger
from netlab.proto.dns_fastpath import Probe, ReplyCache
from netlab.proto.dns_tcp import DnsStream, EndOfStream, Message, NeedData
from netlab.proto.dns_wire import (
    DEFAULT_UDP_PAYLOAD,
    Edns,
    Rcode,
    RemoteProtocolError,
    Transport,
    check_query,
    describe_question,
    encode_reply,
    error_reply,
    make_reply,
    parse_message_untrusted,
    rcode_text,
    read_header_untrusted,
    reply_limit,
)

__all__ = ["DnsCounters", "DnsHandler", "DnsQuery", "DnsServer", "DnsServerSettings"]

log = logging.getLogger(__name__)

MAX_RECV = 65536  # octets per TCP read


@dataclass(frozen=True)
class DnsQuery:
    """A checked query, as the handler sees it."""

    message: DNSRecord
    question: DNSQuestion
    edns: Edns | None
    client: Addr
    transport: Transport


class DnsHandler(Protocol):
    async def __call__(self, query: DnsQuery) -> DNSRecord | None: ...


@dataclass(frozen=True)
class DnsServerSettings:
    """How the core serves; the defaults suit a server on loopback."""

    #: The EDNS UDP payload size we advertise and the most we send over UDP (RFC 6891 6.2.5).
    udp_payload: int = DEFAULT_UDP_PAYLOAD
    #: Seconds a TCP connection may sit idle (or inside a message) before we close it.
    tcp_idle_timeout: float = 10.0
    max_tcp_connections: int = 128
    #: Queries answered at once per TCP connection; more wait in the socket.
    max_tcp_inflight: int = 16
    #: A query is a header, a question and an OPT record: a few hundred octets.  A longer length
    #: prefix is refused before its octets arrive.
    max_tcp_query: int = 4096
    udp_workers: int = 16
    udp_queue: int = 256  # queries waiting for a UDP worker; more are dropped
    #: Encoded replies kept for replay; 0 turns the cache off (see the module docstring).
    replay_cache: int = 0
    query_log: bool = True


@dataclass
class DnsCounters:
    """What happened, for tests, logs and the curious."""

    udp_queries: int = 0
    tcp_queries: int = 0
    replies: int = 0
    replayed: int = 0
    truncated: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # replies by error RCODE name
    dropped_malformed: int = 0  # not even a header
    dropped_responses: int = 0  # QR set
    dropped_full: int = 0  # UDP queue full
    handler_failures: int = 0  # answered SERVFAIL
    unanswered: int = 0  # the handler chose not to reply
    tcp_connections: int = 0
    tcp_rejected: int = 0  # over max_tcp_connections
    tcp_idle_closed: int = 0
    tcp_bad_frames: int = 0  # oversized length prefix, or EOF inside a message

    def count_error(self, rcode: int) -> None:
        name = rcode_text(rcode)
        self.errors[name] = self.errors.get(name, 0) + 1


class DnsServer:
    """Serves one handler over any number of UDP endpoints and TCP listeners."""

    def __init__(
        self, handler: DnsHandler, settings: DnsServerSettings | None = None, *, name: str = "dns"
    ) -> None:
        self.handler = handler
        self.settings = settings or DnsServerSettings()
        self.counters = DnsCounters()
        self.cache = (
            ReplyCache(self.settings.replay_cache, our_payload=self.settings.udp_payload)
            if self.settings.replay_cache
            else None
        )
        self._access = access_logger(name)
        self._tcp_open = 0

    # -- the message pipeline ------------------------------------------------------------------

    def replay(self, data: bytes, client: Addr, transport: Transport) -> tuple[bytes | None, Probe | None]:
        """The kept reply to ``data`` if the cache has one; else the probe to store the reply by."""
        if self.cache is None:
            return None, None
        probe = self.cache.probe(data, transport)
        if probe is None:
            return None, None
        wire = self.cache.replay(probe, data)
        if wire is None:
            return None, probe
        self.counters.replayed += 1
        self._count_query(transport)
        self.counters.replies += 1
        if self.settings.query_log:
            self._log_line(
                client, transport, _question_text(data, probe.name_end), wire, trio.current_time(), "cached"
            )
        return wire, probe

    async def answer(
        self, data: bytes, client: Addr, transport: Transport, probe: Probe | None = None
    ) -> bytes | None:
        """The encoded reply to the message ``data``, or None when it gets none.

        ``probe`` is what :meth:`replay` returned: where to keep the reply for next time.
        """
        started = trio.current_time()
        header = read_header_untrusted(data)
        if header is None:
            self.counters.dropped_malformed += 1
            log.debug("dropped %d octets from %s: no header", len(data), client)
            return None
        if header.qr:
            self.counters.dropped_responses += 1
            return None
        self._count_query(transport)
        try:
            message = parse_message_untrusted(data)
            question, edns = check_query(message)
        except RemoteProtocolError as exc:
            self.counters.count_error(exc.rcode)
            log.debug("%s from %s: %s", rcode_text(exc.rcode), client, exc)
            limit = reply_limit(transport, exc.edns, self.settings.udp_payload)
            wire, _ = encode_reply(
                error_reply(exc),
                limit=limit,
                edns=exc.edns,
                rcode=exc.rcode,
                our_payload=self.settings.udp_payload,
            )
            if probe is not None and self.cache is not None:
                self.cache.put(probe, wire)
            return self._sent(client, transport, str(exc), wire, started)
        query = DnsQuery(message, question, edns, client, transport)
        limit = reply_limit(transport, edns, self.settings.udp_payload)
        try:
            reply = await self.handler(query)
            if reply is None:
                self.counters.unanswered += 1
                return None
            wire, truncated = encode_reply(
                reply, limit=limit, edns=edns, our_payload=self.settings.udp_payload
            )
        except Exception:
            # A bug in a handler must cost one query, not the server.
            log.exception("handler failed on %s from %s", describe_question(question), client)
            self.counters.handler_failures += 1
            failure = make_reply(message)
            failure.header.rcode = Rcode.SERVFAIL
            wire, truncated = encode_reply(
                failure, limit=limit, edns=edns, our_payload=self.settings.udp_payload
            )
            probe = None  # never keep a failure
        if truncated:
            self.counters.truncated += 1
        if probe is not None and self.cache is not None:
            self.cache.put(probe, wire)
        return self._sent(client, transport, describe_question(question), wire, started)

    def _count_query(self, transport: Transport) -> None:
        if transport is Transport.UDP:
            self.counters.udp_queries += 1
        else:
            self.counters.tcp_queries += 1

    def _sent(self, client: Addr, transport: Transport, what: str, wire: bytes, started: float) -> bytes:
        self.counters.replies += 1
        if self.settings.query_log:
            self._log_line(client, transport, what, wire, started, "")
        return wire

    def _log_line(
        self, client: Addr, transport: Transport, what: str, wire: bytes, started: float, note: str
    ) -> None:
        # client#port proto question -> RCODE flags answer/authority/additional size time
        rcode = wire[3] & 0x0F
        flags = " ".join(f for f, bit in (("aa", wire[2] & 0x04), ("tc", wire[2] & 0x02)) if bit) or "-"
        counts = "/".join(str(int.from_bytes(wire[i : i + 2], "big")) for i in (6, 8, 10))
        elapsed = (trio.current_time() - started) * 1000
        self._access.info(
            "%s#%d %s %s -> %s %s %s %dB %.2fms%s",
            client[0],
            client[1],
            transport.value,
            what,
            rcode_text(rcode),
            flags,
            counts,
            len(wire),
            elapsed,
            f" {note}" if note else "",
        )

    # -- UDP -----------------------------------------------------------------------------------

    async def serve_udp(self, endpoint: DatagramEndpoint) -> None:
        """Answer queries on ``endpoint`` until cancelled (see :mod:`netlab.aio.dns_udp`)."""
        await dns_udp.serve_udp(self, endpoint)

    # -- TCP -----------------------------------------------------------------------------------

    async def serve_tcp(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on ``listeners`` until cancelled."""
        await trio.serve_listeners(self._on_connection, list(listeners), task_status=task_status)

    async def _on_connection(self, stream: trio.abc.Stream) -> None:
        client = _peer_of(stream)
        if self._tcp_open >= self.settings.max_tcp_connections:
            self.counters.tcp_rejected += 1
            log.info("refused a TCP connection from %s: %d open", client, self._tcp_open)
            await trio.aclose_forcefully(stream)
            return
        self._tcp_open += 1
        try:
            await self.handle_connection(stream, client)
        finally:
            self._tcp_open -= 1

    async def handle_connection(self, stream: trio.abc.Stream, client: Addr) -> None:
        """Serve one TCP connection until the client closes it or lets it idle; then close it."""
        self.counters.tcp_connections += 1
        framer = DnsStream(max_message=self.settings.max_tcp_query)
        send_lock = trio.Lock()
        inflight = trio.Semaphore(self.settings.max_tcp_inflight)

        async def send(wire: bytes) -> None:
            try:
                async with send_lock:
                    await stream.send_all(framer.send(wire))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away; the reader sees it too

        async def answer_one(data: bytes, probe: Probe | None) -> None:
            try:
                wire = await self.answer(data, client, Transport.TCP, probe)
                if wire is not None:
                    await send(wire)
            finally:
                inflight.release()

        async with stream, trio.open_nursery() as nursery:
            while (data := await self._read_query(stream, framer, client)) is not None:
                wire, probe = self.replay(data, client, Transport.TCP)
                if wire is not None:
                    await send(wire)
                    continue
                await inflight.acquire()
                nursery.start_soon(answer_one, data, probe)
            # Leaving the nursery waits for the answers still being worked on.

    async def _read_query(self, stream: trio.abc.Stream, framer: DnsStream, client: Addr) -> bytes | None:
        """The next query on a connection, or None when it is time to close it."""
        event: Message | EndOfStream | None = None
        try:
            with trio.move_on_after(self.settings.tcp_idle_timeout):
                event = await _next_message(stream, framer)
        except RemoteProtocolError as exc:
            self.counters.tcp_bad_frames += 1
            log.info("closing TCP connection from %s: %s", client, exc)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if event is None:
            # RFC 7766 section 6.2.3: idle connections are closed; answers in progress still go out.
            self.counters.tcp_idle_closed += 1
            log.debug("closing idle TCP connection from %s", client)
            return None
        if isinstance(event, EndOfStream):
            return None
        return event.data


async def _next_message(stream: trio.abc.Stream, framer: DnsStream) -> Message | EndOfStream:
    event = framer.next_event()
    while isinstance(event, NeedData):
        framer.receive_data(await stream.receive_some(MAX_RECV))
        event = framer.next_event()
    return event


def _peer_of(stream: trio.abc.Stream) -> Addr:
    if isinstance(stream, trio.SocketStream):
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:
            return ("?", 0)
        return (host, port)
    return ("memory", 0)


def _question_text(data: bytes, name_end: int) -> str:
    """The question of a plain query, for the log, without decoding the message."""
    labels = []
    pos = 12
    while pos < name_end - 1:
        length = data[pos]
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "backslashreplace"))
        pos += length + 1
    qtype = int.from_bytes(data[name_end : name_end + 2], "big")
    qclass = int.from_bytes(data[name_end + 2 : name_end + 4], "big")
    name = "".join(f"{label}." for label in labels) or "."
    return f"{name} {CLASS.get(qclass)} {QTYPE.get(qtype)}"
