"""One POP3 connection: the trio driver around :class:`Pop3ServerConnection`.

Strategy: the machine says what is legal in each state; this driver checks credentials, locks
the maildrop, and reads and deletes messages through the store, in worker threads.  Logging in
(USER/PASS, APOP, AUTH) takes the maildrop's exclusive lock (RFC 1939 section 8) or fails with
``-ERR [IN-USE]`` (RFC 2449 section 8.1.1); the session then works on a numbered snapshot
(:class:`MaildropView`) and applies deletions only in the UPDATE state after QUIT.  A session
that ends any other way (EOF, idle timeout, shutdown) deletes nothing.  Failed logins are answered
after a delay and end the session after a few; plaintext credentials are refused outside TLS
unless configured otherwise (RFC 2595 section 2.3).  Buffered commands are answered together, so
a pipelining client (RFC 2449 PIPELINING) gets its answers in order in few writes.
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
import secrets
import ssl
from dataclasses import dataclass, field

import trio

from netlab.aio.sessions import SessionWaits, Waiter
from netlab.config import Pop3Config
from netlab.proto.mail_lines import to_crlf
from netlab.proto.pop3 import NEED_DATA, Pop3ServerConnection, State
from netlab.proto.pop3_events import (
    Apop,
    Auth,
    AuthResponse,
    Capa,
    ConnectionClosed,
    Continue,
    Dele,
    Err,
    Event,
    List,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from netlab.proto.pop3_maildrop import MaildropView, apop_digest, top_of
from netlab.proto.sasl import Challenge, Credentials, SaslError, SaslServer
from netlab.store.maildir import Maildir
from netlab.store.maildrop_lock import MaildropLock
from netlab.store.users import UserRecord, apop_secret
from servers.mail_system import MailSystem
from servers.smtp_session import peer_ip

__all__ = ["Pop3ServerContext", "handle_connection"]

log = logging.getLogger(__name__)

MAX_RECV = 65536
#: Messages up to this size (octets) are read on the event loop; bigger ones in a worker thread.
INLINE_READ = 64 * 1024


@dataclass
class Pop3ServerContext:
    config: Pop3Config
    hostname: str
    mail: MailSystem
    ssl_context: ssl.SSLContext | None
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    waits: SessionWaits = field(init=False)

    def __post_init__(self) -> None:
        self.waits = SessionWaits(self.config.idle_timeout)


async def handle_connection(stream: trio.abc.Stream, ctx: Pop3ServerContext) -> None:
    session = _Session(stream, ctx)
    ctx.stats["sessions"] += 1
    try:
        await session.run()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("%s: connection lost: %r", session.peer, exc)
    finally:
        if session.lock is not None:
            session.lock.release()
        # The SSL wrapper if TLS started (closing it closes the transport as well).
        await trio.aclose_forcefully(session.stream)


class _Session:
    def __init__(self, stream: trio.abc.Stream, ctx: Pop3ServerContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.cfg = ctx.config
        self.conn = Pop3ServerConnection()
        self.peer = peer_ip(stream)
        self.tls = False
        self.user_name: str | None = None
        self.failures = 0
        self.sasl: SaslServer | None = None
        self.lock: MaildropLock | None = None
        self.maildir: Maildir | None = None
        self.view: MaildropView | None = None
        self.closing = False  # end the session after the answer being written
        # RFC 1939 section 7: the greeting's timestamp must be unique per session.
        self.timestamp = f"<{os.getpid()}.{secrets.token_hex(8)}@{ctx.hostname}>"

    async def run(self) -> None:
        greeting = "POP3 netlab ready" + (f" {self.timestamp}" if self.cfg.apop else "")
        await self.stream.send_all(self.conn.send(Ok(greeting)))
        ended = await self.ctx.waits.run(self._commands)
        if ended is not None:
            # RFC 1939 section 3: the autologout timer closes without entering UPDATE.
            log.info("%s: %s, closing", self.peer, ended.value)

    async def _commands(self, waiter: Waiter) -> None:
        conn = self.conn
        while not conn.closed and not self.closing:
            out = bytearray()
            while not conn.closed and not self.closing:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as exc:
                    out += conn.send(exc.reply)
                    self.closing = exc.fatal
                    continue
                if event is NEED_DATA or isinstance(event, ConnectionClosed):
                    break
                answer = await self._dispatch(event)
                out += conn.send(answer)
                if isinstance(event, Stls) and isinstance(answer, Ok):
                    await self.stream.send_all(bytes(out))
                    out.clear()
                    if not await self._start_tls():
                        return
            if out:
                await self.stream.send_all(bytes(out))
            if conn.closed or self.closing:
                return
            conn.receive_data(await waiter.receive(self.stream, MAX_RECV))

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
            self.user_name = None
            return True
        return False

    @property
    def _plaintext_ok(self) -> bool:
        return self.tls or not self.cfg.auth_requires_tls

    async def _dispatch(self, event: Event) -> Ok | Err | Continue:
        view = self.view
        match event:
            case Capa():
                return Ok("Capability list follows", self._capabilities())
            case User(name):
                if not self._plaintext_ok:
                    return Err("Plaintext authentication disallowed without TLS (use STLS)", "AUTH")
                self.user_name = name
                return Ok("Send PASS")
            case Pass(password):
                assert self.user_name is not None
                record = await self.ctx.mail.verify(self.user_name, password)
                return await self._login(record, self.user_name)
            case Apop(name, digest):
                return await self._apop(name, digest)
            case Auth(mechanism, initial):
                if not self._plaintext_ok:
                    return Err("Authentication disallowed without TLS (use STLS)", "AUTH")
                try:
                    self.sasl = SaslServer(mechanism)
                    return await self._sasl_step(self.sasl.start(initial))
                except SaslError as exc:
                    self.sasl = None
                    return Err(str(exc))
            case AuthResponse(line):
                assert self.sasl is not None
                try:
                    return await self._sasl_step(self.sasl.respond(line))
                except SaslError as exc:
                    self.sasl = None
                    return Err(str(exc))
            case Stls():
                if self.tls:
                    return Err("Already using TLS")
                if self.ctx.ssl_context is None:
                    return Err("TLS not available")
                return Ok("Begin TLS negotiation")
            case Quit():
                return await self._quit()
        assert view is not None  # every other command is a TRANSACTION-state command
        match event:
            case Stat():
                return view.stat()
            case List(which):
                return view.sizes(which)
            case Uidl(which):
                return view.uids(which)
            case Dele(which):
                return view.dele(which)
            case Rset():
                return view.rset()
            case Noop():
                return Ok()
            case Retr(which):
                return await self._read(which, None)
            case Top(which, lines):
                return await self._read(which, lines)
        raise AssertionError(f"unhandled {event!r}")  # pragma: no cover

    def _capabilities(self) -> bytes:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
        if self.conn.state is not State.TRANSACTION:
            if self._plaintext_ok:
                caps += ["USER", "SASL PLAIN LOGIN"]
            if self.ctx.ssl_context is not None and not self.tls:
                caps.append("STLS")
        caps.append("IMPLEMENTATION netlab")
        return "".join(f"{c}\r\n" for c in caps).encode()

    async def _apop(self, name: str, digest: str) -> Ok | Err:
        if not self.cfg.apop:
            return Err("APOP not enabled")
        record = self.ctx.mail.users.get(name)
        secret = apop_secret(record) if record else None
        expected = apop_digest(self.timestamp, secret) if secret is not None else "-"
        ok = hmac.compare_digest(expected.encode(), digest.encode())
        return await self._login(record if ok else None, name)

    async def _sasl_step(self, step: Challenge | Credentials) -> Ok | Err | Continue:
        if isinstance(step, Challenge):
            return Continue(step.encoded())
        self.sasl = None
        record = None
        if not step.authzid or step.authzid == step.username:
            record = await self.ctx.mail.verify(step.username, step.password)
        return await self._login(record, step.username)

    async def _login(self, record: UserRecord | None, name: str) -> Ok | Err:
        if record is None:
            self.failures += 1
            self.ctx.stats["auth_failures"] += 1
            log.info("%s: login failed for %r", self.peer, name)
            await trio.sleep(self.cfg.login_delay)
            if self.failures >= self.cfg.max_failed_logins:
                self.closing = True
                return Err("Too many failed logins", "AUTH")
            return Err("Authentication failed", "AUTH")
        maildir = self.ctx.mail.store.maildir(record.address)
        lock = await self.ctx.mail.run_blocking(self.ctx.mail.locks.try_acquire, maildir.path)
        if lock is None:
            return Err("Maildrop already locked by another session", "IN-USE")
        try:
            messages = await self.ctx.mail.run_blocking(maildir.scan)
        except OSError as exc:
            lock.release()
            log.error("%s: cannot open maildrop of %s: %s", self.peer, record.address, exc)
            return Err("Cannot open maildrop", "SYS/TEMP")
        self.lock, self.maildir, self.view = lock, maildir, MaildropView(messages)
        log.info("%s: %s logged in, %d message(s)", self.peer, record.address, len(messages))
        return Ok(f"{len(messages)} message(s), {sum(m.size for m in messages)} octets")

    async def _read(self, which: int, lines: int | None) -> Ok | Err:
        assert self.view is not None
        assert self.maildir is not None
        found = self.view.message(which)
        if isinstance(found, Err):
            return found
        try:
            if found.size <= INLINE_READ:
                # A small file comes from the page cache faster than a thread hand-off.
                content = to_crlf(self.maildir.read(found.key))
            else:
                content = to_crlf(await self.ctx.mail.run_blocking(self.maildir.read, found.key))
        except FileNotFoundError:
            return Err(f"Message {which} vanished from the maildrop")
        if lines is not None:
            return Ok("Top of message follows", top_of(content, lines))
        return Ok(f"{len(content)} octets", content)

    async def _quit(self) -> Ok | Err:
        if self.view is None or self.maildir is None:
            return Ok("Bye")
        # The UPDATE state (RFC 1939 section 6).
        doomed = [m.key for m in self.view.deleted()]
        failed = await self.ctx.mail.run_blocking(self.maildir.delete, doomed)
        if failed:
            return Err("Some deleted messages not removed")
        return Ok(f"Bye ({len(doomed)} message(s) deleted)")
