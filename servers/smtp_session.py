"""One SMTP connection: the trio driver around :class:`SmtpServerConnection`.

Strategy: the machine decides what is legal; this driver decides the rest (who is a local user,
who may relay, whether a password is right) and does the I/O.  Every command already buffered is
answered before the replies are written, in one ``send_all``, which is how pipelined groups
(RFC 2920) get their replies in order and in one packet.  A 354 and a 220 to STARTTLS are written
at once, because the client waits for them.  Waiting for the client is bounded by the idle
timeout (421 4.4.2, RFC 5321 section 4.5.3.2.7) and interrupted by a shutdown (421 4.3.2) unless
a message is being received.  Policy: mail for a local domain goes to existing users only (550
5.1.1); mail for any other domain is relayed only for authenticated users and trusted networks
(550 5.7.1 otherwise), so the server is never an open relay; AUTH is offered only inside TLS
unless configured otherwise (538 5.7.11, RFC 4954 section 6), and a failed AUTH is answered after
a delay, with the session closed after a few failures.
"""

from __future__ import annotations

import collections
import email.utils
import functools
import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass, field

import trio

from netlab.aio.sessions import SessionWaits, WaitEnd, Waiter
from netlab.config import SmtpConfig
from netlab.log import access_logger
from netlab.proto.mail_headers import received_header, with_protocol
from netlab.proto.mail_lines import to_lf
from netlab.proto.sasl import Challenge, Credentials, SaslError, SaslServer
from netlab.proto.smtp_events import (
    Auth,
    AuthResponse,
    ConnectionClosed,
    Data,
    Event,
    Hello,
    Help,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    Vrfy,
)
from netlab.proto.smtp_server import NEED_DATA, SmtpServerConnection, State
from servers.mail_system import MailSystem, new_message_id

__all__ = ["SmtpServerContext", "handle_connection", "peer_ip"]

log = logging.getLogger(__name__)
access = access_logger("smtp")

MAX_RECV = 65536  # bytes per read
#: A message that has passed this many servers is looping (RFC 5321 section 6.3 suggests 100).
MAX_HOPS = 100

# The replies that never change, made (and encoded) once.
_OK = Reply(250, "Ok", "2.0.0")
_MAIL_OK = Reply(250, "Ok", "2.1.0")
_RCPT_OK = Reply(250, "Ok", "2.1.5")
_GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")
_BYE = Reply(221, "Bye", "2.0.0")


class _DateStamp:
    """The current time as an RFC 5322 date-time, formatted once per second, not per message."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._text = email.utils.formatdate(now, localtime=True)
        return self._text


_DATE = _DateStamp()


@dataclass
class SmtpServerContext:
    """What the sessions of one server share."""

    config: SmtpConfig
    hostname: str
    mail: MailSystem
    ssl_context: ssl.SSLContext | None
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    waits: SessionWaits = field(init=False)

    def __post_init__(self) -> None:
        self.waits = SessionWaits(self.config.idle_timeout)

    @functools.cached_property
    def helo_reply(self) -> Reply:
        return Reply(250, self.hostname)


def peer_ip(stream: trio.abc.Stream) -> str:
    """The client's IP address, or "unknown" for a stream without a socket."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "unknown"
    try:
        address = sock.getpeername()
    except OSError:
        return "unknown"
    return str(address[0]) if isinstance(address, tuple) else str(address)


async def handle_connection(stream: trio.abc.Stream, ctx: SmtpServerContext) -> None:
    """Serve one client until QUIT, a fatal error, the idle timeout or shutdown."""
    session = _Session(stream, ctx)
    ctx.stats["sessions"] += 1
    try:
        await session.run()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("%s: connection lost: %r", session.peer, exc)
    finally:
        # The SSL wrapper if TLS started (closing it closes the transport as well).
        await trio.aclose_forcefully(session.stream)


class _Session:
    def __init__(self, stream: trio.abc.Stream, ctx: SmtpServerContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.cfg = ctx.config
        self.conn = SmtpServerConnection(max_message_size=ctx.config.max_message_size)
        self.peer = peer_ip(stream)
        self.tls = False
        self.helo = ""
        self.extended = False
        self.user: str | None = None
        self.auth_failures = 0
        self.sasl: SaslServer | None = None
        self.sender: MailFrom | None = None
        self.recipients: list[str] = []

    @property
    def trusted(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.peer)
        except ValueError:
            return False
        return any(ip in net for net in self.ctx.trusted)

    async def run(self) -> None:
        conn = self.conn
        if self.ctx.waits.closing.is_set():
            await self.stream.send_all(
                conn.send(Reply(421, f"{self.ctx.hostname} Service shutting down", "4.3.2"))
            )
            return
        await self.stream.send_all(conn.send(Reply(220, f"{self.ctx.hostname} ESMTP netlab")))
        ended = await self.ctx.waits.run(self._commands)
        if ended is WaitEnd.SHUTDOWN:
            await self._close(Reply(421, f"{self.ctx.hostname} Service shutting down", "4.3.2"))
        elif ended is WaitEnd.IDLE:
            self.ctx.stats["timeouts"] += 1
            log.info("%s: idle for %gs, closing", self.peer, self.cfg.idle_timeout)
            await self._close(Reply(421, f"{self.ctx.hostname} Idle timeout, closing", "4.4.2"))

    async def _commands(self, waiter: Waiter) -> None:
        """Answer commands until the session ends (a wait that is cut short ends it too)."""
        conn = self.conn
        while not conn.closed:
            out = bytearray()
            while not conn.closed:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as exc:
                    self.ctx.stats["refused"] += 1
                    log.info("%s: refused: %s %s", self.peer, exc.reply.code, exc.reply.text)
                    out += conn.send(exc.reply)
                    continue
                if event is NEED_DATA or isinstance(event, ConnectionClosed):
                    # At EOF the client may still read (a half-close): it gets its replies.
                    break
                reply = await self._dispatch(event)
                out += conn.send(reply)
                if reply.code == 354 or (isinstance(event, StartTls) and reply.code == 220):
                    # The client waits for these before it sends anything more.
                    await self.stream.send_all(bytes(out))
                    out.clear()
                    if isinstance(event, StartTls) and not await self._start_tls():
                        return
            if out:
                await self.stream.send_all(bytes(out))
            if conn.closed:
                return
            # A message being received is not interrupted by a shutdown, only by the idle limit.
            conn.receive_data(
                await waiter.receive(self.stream, MAX_RECV, interruptible=conn.state is not State.DATA)
            )

    async def _close(self, reply: Reply) -> None:
        with trio.move_on_after(5):
            await self.stream.send_all(self.conn.send(reply))

    async def _start_tls(self) -> bool:
        assert self.ctx.ssl_context is not None
        self.stream = trio.SSLStream(self.stream, self.ctx.ssl_context, server_side=True)
        with trio.move_on_after(self.cfg.idle_timeout):
            try:
                await self.stream.do_handshake()
            except trio.BrokenResourceError as exc:
                log.info("%s: TLS handshake failed: %s", self.peer, exc.__cause__ or exc)
                return False
            self.tls = True
            # RFC 3207 section 4.2: forget everything learnt before TLS, the AUTH included.
            self._reset(helo=True)
            self.user = None
            return True
        return False

    def _reset(self, *, helo: bool = False) -> None:
        self.sender = None
        self.recipients = []
        if helo:
            self.helo = ""

    # -- commands ------------------------------------------------------------------------------

    async def _dispatch(self, event: Event) -> Reply:
        match event:
            case Hello(domain, extended):
                self._reset()
                self.helo, self.extended = domain, extended
                if not extended:
                    return self.ctx.helo_reply
                return Reply(250, "\n".join([f"{self.ctx.hostname} greets {domain}", *self._extensions()]))
            case MailFrom():
                self._reset()
                self.sender = event
                return _MAIL_OK
            case RcptTo(address):
                return self._rcpt(address)
            case Data():
                return _GO_AHEAD
            case MessageData(content):
                return await self._message(content)
            case Rset():
                self._reset()
                return _OK
            case Noop():
                return _OK
            case Quit():
                return _BYE
            case Vrfy():
                # RFC 5321 section 3.5.3: 252 when we will not confirm addresses.
                return Reply(252, "Cannot VRFY user, but will accept message and attempt delivery", "2.5.0")
            case Help():
                return Reply(
                    214, "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH", "2.0.0"
                )
            case StartTls():
                if self.tls:
                    return Reply(503, "Already using TLS", "5.5.1")
                if self.ctx.ssl_context is None:
                    return Reply(454, "TLS not available", "4.7.0")
                return Reply(220, "Ready to start TLS", "2.0.0")
            case Auth(mechanism, initial):
                return await self._auth(mechanism, initial)
            case AuthResponse(line):
                assert self.sasl is not None
                try:
                    return await self._sasl_step(self.sasl.respond(line))
                except SaslError as exc:
                    return self._sasl_error(exc)
        raise AssertionError(f"unhandled {event!r}")  # pragma: no cover

    def _extensions(self) -> list[str]:
        exts = [
            "PIPELINING",
            f"SIZE {self.cfg.max_message_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
        ]
        if self.ctx.ssl_context is not None and not self.tls:
            exts.append("STARTTLS")
        if self._auth_allowed and self.user is None:
            exts.append("AUTH PLAIN LOGIN")
        return exts

    @property
    def _auth_allowed(self) -> bool:
        return self.tls or not self.cfg.auth_requires_tls

    def _rcpt(self, address: str) -> Reply:
        if len(self.recipients) >= self.cfg.max_recipients:
            # RFC 5321 section 4.5.3.1.10: 452 so the client sends the rest in another message.
            return Reply(452, "Too many recipients", "4.5.3")
        if address == "postmaster" or self.ctx.mail.is_local(address):
            user = self.ctx.mail.local_user(address)
            if user is None:
                return Reply(550, f"<{address}>: User unknown", "5.1.1")
            self.recipients.append(user)
            return _RCPT_OK
        if self.user is None and not self.trusted:
            self.ctx.stats["relay_denied"] += 1
            log.info("%s: relay to <%s> denied", self.peer, address)
            return Reply(550, f"<{address}>: Relay access denied", "5.7.1")
        self.recipients.append(address)
        return _RCPT_OK

    async def _message(self, content: bytes) -> Reply:
        assert self.sender is not None
        headers = content.partition(b"\r\n\r\n")[0]
        if (b"\r\n" + headers).lower().count(b"\r\nreceived:") >= MAX_HOPS:
            self._reset()
            log.warning("%s: refused a message with %d+ Received: headers (mail loop)", self.peer, MAX_HOPS)
            return Reply(554, "Too many hops, mail loop detected", "5.4.6")
        message_id = new_message_id()
        protocol = with_protocol(
            extended=self.extended,
            tls=self.tls,
            authenticated=self.user is not None,
            smtputf8=self.sender.smtputf8,
        )
        header = received_header(
            helo=self.helo,
            peer_ip=self.peer,
            by=self.ctx.hostname,
            protocol=protocol,
            queue_id=message_id,
            recipients=self.recipients,
            date=_DATE.now(),
        )
        sender, recipients = self.sender.address, self.recipients
        self._reset()
        try:
            await self.ctx.mail.accept(sender, recipients, to_lf(header + content))
        except OSError as exc:
            log.error("%s: storing %s failed: %s", self.peer, message_id, exc)
            self.ctx.stats["store_errors"] += 1
            return Reply(451, "Local error in processing, try again later", "4.3.0")
        self.ctx.stats["messages"] += 1
        access.info(
            "%s from=<%s> to=%s size=%d peer=%s proto=%s user=%s",
            message_id,
            sender,
            ",".join(f"<{r}>" for r in recipients),
            len(content),
            self.peer,
            protocol,
            self.user or "-",
        )
        return Reply(250, f"Ok: queued as {message_id}", "2.0.0")

    # -- AUTH (RFC 4954) -----------------------------------------------------------------------

    async def _auth(self, mechanism: str, initial: str | None) -> Reply:
        if self.user is not None:
            return Reply(503, "Already authenticated", "5.5.1")
        if not self._auth_allowed:
            return Reply(538, "Encryption required for requested authentication mechanism", "5.7.11")
        try:
            self.sasl = SaslServer(mechanism)
            return await self._sasl_step(self.sasl.start(initial))
        except SaslError as exc:
            return self._sasl_error(exc)

    async def _sasl_step(self, step: Challenge | Credentials) -> Reply:
        if isinstance(step, Challenge):
            return Reply(334, step.encoded())
        self.sasl = None
        record = None
        if not step.authzid or step.authzid == step.username:
            record = await self.ctx.mail.verify(step.username, step.password)
        if record is None:
            self.auth_failures += 1
            self.ctx.stats["auth_failures"] += 1
            log.info("%s: AUTH failed for %r", self.peer, step.username)
            await trio.sleep(self.cfg.login_delay)
            if self.auth_failures >= self.cfg.max_auth_failures:
                return Reply(421, "Too many failed authentication attempts", "4.7.0")
            return Reply(535, "Authentication credentials invalid", "5.7.8")
        self.user = record.address
        log.info("%s: authenticated as %s", self.peer, self.user)
        return Reply(235, "Authentication successful", "2.7.0")

    def _sasl_error(self, exc: SaslError) -> Reply:
        self.sasl = None
        if exc.reason == "mechanism":
            return Reply(504, str(exc), "5.5.4")
        if exc.reason == "cancelled":
            return Reply(501, str(exc), "5.7.0")
        return Reply(501, str(exc), "5.5.2")
