"""The relay: delivers queued mail to other domains' servers, retries, and bounces.

Strategy: one task watches the durable queue.  It wakes when the SMTP server queues something or
when the earliest retry time comes, and starts an attempt for every entry that is due (never two
at once for one entry).  An attempt groups the remaining recipients by domain and, per domain,
follows RFC 5321 section 5.1: the MX records in order of preference (a domain without MX is its
own implicit MX; a null MX, RFC 7505, refuses mail), each host's addresses in turn, until one
server gives an answer about the recipients.  Per recipient a 2yz is done, a 5yz is a permanent
failure, anything else (4yz, no answer, DNS trouble) waits for the next attempt.

Retries come at growing intervals from the configuration, the last repeating (RFC 5321 section
4.5.4.1); after the give-up time what is left fails for good.  Permanent failures are reported
to the sender in one RFC 3464 bounce from the null reverse-path, and a message that itself came
from the null reverse-path is never bounced (section 4.5.5), so two servers can never bounce a
bounce back and forth.  The entry's state is saved before the bounce is sent and the entry is
removed only after, so a crash can repeat a bounce but never lose one.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from netlab.aio.dns_stub import DnsLookupError
from netlab.aio.smtp_send import SendResult, SmtpSendError, send_message
from netlab.config import SmtpConfig
from netlab.log import access_logger
from netlab.proto.dsn import RecipientStatus, bounce_message
from netlab.proto.mail_lines import to_crlf, to_lf
from netlab.proto.smtp_events import Reply
from netlab.store.mail_queue import Failure, QueueEntry
from servers.mail_system import MailSystem, new_message_id

__all__ = ["Connect", "MxResolver", "Relay"]

log = logging.getLogger(__name__)
access = access_logger("smtp")

CONNECT_TIMEOUT = 30.0  # seconds per address
MAX_PARALLEL = 10  # entries delivered at once
LOCK_RETRY = 30.0  # seconds between tries to take over the queue from another relay


class MxResolver(Protocol):
    """What the relay needs from DNS (``netlab.aio.dns_stub.StubResolver`` has it)."""

    async def resolve_mx(self, domain: str) -> list[tuple[int, str]]: ...

    async def resolve_addresses(self, host: str) -> list[str]: ...


Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]


@dataclass(frozen=True)
class _Outcome:
    reply: Reply
    mta: str | None = None
    #: The reply is the relay's own verdict (DNS trouble, no answer, a message the server cannot
    #: take), not one a server sent: the bounce says so rather than quoting it as SMTP.
    local: bool = False

    @property
    def permanent(self) -> bool:
        return self.reply.code // 100 == 5

    @property
    def delivered(self) -> bool:
        return self.reply.code // 100 == 2


class Relay:
    def __init__(
        self,
        mail: MailSystem,
        config: SmtpConfig,
        hostname: str,
        *,
        resolver: MxResolver,
        connect: Connect = trio.open_tcp_stream,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.mail = mail
        self.config = config
        self.hostname = hostname
        self.resolver = resolver
        self.connect = connect
        self.ssl_context = ssl_context
        self._in_flight: set[str] = set()
        self._limiter = trio.CapacityLimiter(MAX_PARALLEL)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued mail until cancelled (once this relay holds the queue's lock)."""
        task_status.started()
        while (lock := await self.mail.run_blocking(self.mail.queue.try_lock)) is None:
            log.info("another relay works on %s; waiting", self.mail.queue.root)
            await trio.sleep(LOCK_RETRY)
        try:
            dropped = await self.mail.run_blocking(self.mail.queue.recover)
            if dropped:
                log.warning("dropped %d half-written queue file(s) left by a crash", dropped)
            await self._deliver_forever()
        finally:
            self.mail.queue.unlock(lock)

    async def _deliver_forever(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                wake = self.mail.take_queued_signal()  # before the scan: no wake-up is lost
                now = self.mail.clock()
                waiting = [e for e in await self.mail.entries() if e.id not in self._in_flight]
                for entry in waiting:
                    if entry.next_try <= now:
                        self._in_flight.add(entry.id)
                        nursery.start_soon(self._attempt, entry)
                later = [e.next_try for e in waiting if e.next_try > now]
                with trio.move_on_after(min(later) - now if later else float("inf")):
                    await wake.wait()

    async def _attempt(self, entry: QueueEntry) -> None:
        try:
            async with self._limiter:
                await self._deliver_entry(entry)
        except Exception:
            log.exception("delivery attempt for %s failed", entry.id)
            entry.next_try = self.mail.clock() + self._delay(entry.attempts)
            await self.mail.run_blocking(self.mail.queue.save, entry)
        finally:
            self._in_flight.discard(entry.id)
            self.mail.queued.set()  # let the loop see the new retry time

    def _delay(self, attempts: int) -> float:
        delays = self.config.retry_delays or (1800.0,)
        return delays[min(max(attempts, 1), len(delays)) - 1]

    async def _deliver_entry(self, entry: QueueEntry) -> None:
        content = await self.mail.run_blocking(self.mail.queue.read, entry.id)
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in entry.recipients:
            by_domain[rcpt.rpartition("@")[2].lower()].append(rcpt)
        outcomes: dict[str, _Outcome] = {}
        for domain, rcpts in by_domain.items():
            outcomes.update(await self._deliver_domain(domain, rcpts, entry.sender, content))
        entry.attempts += 1
        now = self.mail.clock()
        expired = now - entry.first_seen >= self.config.give_up_after
        remaining = []
        for rcpt in entry.recipients:
            outcome = outcomes[rcpt]
            access.info(
                "%s to=<%s> relay=%s status=%s (%s %s)",
                entry.id,
                rcpt,
                outcome.mta or "none",
                "sent" if outcome.delivered else "bounced" if outcome.permanent else "deferred",
                outcome.reply.code,
                outcome.reply.text,
            )
            if outcome.delivered:
                continue
            if outcome.permanent or expired:
                status = outcome.reply.enhanced or "5.0.0"
                if not outcome.permanent:
                    status = "4.4.7"  # RFC 3463: delivery time expired
                reply = outcome.reply
                if not outcome.local:
                    diagnostic = f"{reply.code} {reply.enhanced or ''} {reply.text}"
                else:
                    diagnostic = reply.text + (f" ({outcome.mta})" if outcome.mta else "")
                entry.failed.append(Failure(rcpt, status, " ".join(diagnostic.split()), outcome.mta))
            else:
                remaining.append(rcpt)
                entry.last_error = f"{outcome.reply.code} {outcome.reply.text}"
        entry.recipients = remaining
        entry.next_try = now + self._delay(entry.attempts)
        if entry.failed:
            await self.mail.run_blocking(self.mail.queue.save, entry)
            await self._bounce(entry, content)
            entry.failed = []
        if entry.recipients:
            await self.mail.run_blocking(self.mail.queue.save, entry)
        else:
            await self.mail.run_blocking(self.mail.queue.remove, entry.id)

    async def _deliver_domain(
        self, domain: str, rcpts: list[str], sender: str, content: bytes
    ) -> dict[str, _Outcome]:
        def everyone(reply: Reply, mta: str | None = None, *, local: bool = True) -> dict[str, _Outcome]:
            return {r: _Outcome(reply, mta, local) for r in rcpts}

        try:
            mx = await self.resolver.resolve_mx(domain)
        except DnsLookupError as exc:
            return everyone(Reply(451, f"MX lookup for {domain} failed: {exc.rcode}", "4.4.3"))
        if mx and all(host == "." for _, host in mx):
            return everyone(Reply(556, f"{domain} accepts no mail (null MX)", "5.1.10"))
        hosts = [host for _, host in mx if host != "."] or [domain]  # RFC 5321 5.1: implicit MX
        last = _Outcome(Reply(451, f"No mail server for {domain} answered", "4.4.1"), local=True)
        for host in hosts:
            try:
                addresses = await self.resolver.resolve_addresses(host)
            except DnsLookupError as exc:
                last = _Outcome(
                    Reply(451, f"Address lookup for {host} failed: {exc.rcode}", "4.4.3"), local=True
                )
                continue
            if not addresses and not mx:
                return everyone(Reply(550, f"{domain} has no MX or address records", "5.1.2"))
            for address in addresses:
                try:
                    result = await self._send_to(address, host, sender, rcpts, content)
                except SmtpSendError as exc:
                    if exc.reply.code // 100 == 5:
                        # Refused for good, by the server or (8-bit or UTF-8 mail it cannot
                        # take, RFC 6152 section 3, RFC 6531 section 3.2) by us: bounce.
                        return everyone(exc.reply, host, local=exc.local)
                    last = _Outcome(exc.reply, host, exc.local)
                    continue
                except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    last = _Outcome(
                        Reply(451, f"Cannot talk to {host} [{address}]: {exc}", "4.4.1"), local=True
                    )
                    continue
                return {r: _Outcome(result.replies[r], host) for r in rcpts}
        return dict.fromkeys(rcpts, last)

    async def _send_to(
        self, address: str, host: str, sender: str, rcpts: list[str], content: bytes
    ) -> SendResult:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await self.connect(address, self.config.relay_port)
        async with stream:
            return await send_message(
                stream,
                helo=self.hostname,
                sender=sender,
                recipients=rcpts,
                content=content,
                tls="opportunistic",
                ssl_context=self.ssl_context,
                server_hostname=host,
            )

    async def _bounce(self, entry: QueueEntry, content: bytes) -> None:
        if not entry.sender:
            # RFC 5321 section 4.5.5: a message from the null reverse-path is never bounced.
            log.warning("%s: undeliverable bounce dropped (%d recipient(s))", entry.id, len(entry.failed))
            return
        headers = to_crlf(content).partition(b"\r\n\r\n")[0]
        bounce = bounce_message(
            reporting_mta=self.hostname,
            sender=entry.sender,
            original_headers=headers,
            failures=[
                RecipientStatus(f.recipient, f.status, f.diagnostic, f.remote_mta) for f in entry.failed
            ],
            arrival=datetime.datetime.fromtimestamp(entry.first_seen, datetime.UTC),
            now=datetime.datetime.fromtimestamp(self.mail.clock(), datetime.UTC),
            message_id=new_message_id(),
        )
        target = entry.sender
        if self.mail.is_local(target):
            local = self.mail.local_user(target)
            if local is None:
                log.warning("%s: bounce to unknown local sender <%s> dropped", entry.id, target)
                return
            target = local
        await self.mail.accept("", [target], to_lf(bounce))
        log.info("%s: bounced %d recipient(s) to <%s>", entry.id, len(entry.failed), entry.sender)
