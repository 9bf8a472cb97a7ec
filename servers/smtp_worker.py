"""One SMTP worker process (``smtp.workers`` > 1): a full SMTP server on inherited sockets.

Strategy: the parent (:func:`servers.smtp.serve`) starts this module in a fresh interpreter with
its listening sockets and its effective configuration (:mod:`netlab.aio.workers` describes the
pipes).  The worker serves connections exactly as a single server does, over the same store,
and stops the same way: on SIGTERM, or when its parent is gone.  It runs no relay; when it queues
mail for another domain it reports :data:`servers.smtp.QUEUED`, and the parent's relay delivers it.
"""

from __future__ import annotations

import logging
import tomllib
from functools import partial

import trio

from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.aio.workers import READY, ParentLink, inherited_sockets, read_setup
from netlab.config import NetlabConfig, override
from netlab.log import setup_logging
from servers.mail_system import MailSystem
from servers.smtp import QUEUED, listener_lines, serve_sessions, smtp_context

__all__ = ["main", "serve_worker"]

log = logging.getLogger(__name__)


async def serve_worker(
    config: NetlabConfig,
    lifetime: Lifetime,
    *,
    listeners: list[trio.abc.Listener[trio.abc.Stream]],
    link: ParentLink,
    mail: MailSystem | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SMTP on ``listeners`` until ``lifetime.stopping``, reporting queued mail to ``link``."""
    ctx = await smtp_context(config, mail)
    async with trio.open_nursery() as background:
        background.start_soon(_report_queued, ctx.mail, link)
        lines = listener_lines("smtp", listeners)
        await serve_sessions(ctx, listeners, lifetime, started=partial(task_status.started, lines))
        background.cancel_scope.cancel()
    log.info("smtp worker: stopped (%s)", dict(ctx.stats))


async def _report_queued(mail: MailSystem, link: ParentLink) -> None:
    wake = mail.take_queued_signal()
    while True:
        await wake.wait()
        wake = mail.take_queued_signal()  # before the report: a message queued after it wakes us again
        link.report(QUEUED)


def main() -> None:
    """The worker program: setup from stdin, sockets from the environment, serve until stopped."""
    config = NetlabConfig()
    for table, values in tomllib.loads(read_setup().decode()).items():
        config = override(config, table, values)
    setup_logging(config.general.log_level)
    trio.run(_run, config)


async def _run(config: NetlabConfig) -> None:
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = [
        trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in inherited_sockets()
    ]
    lifetime = Lifetime()
    link = ParentLink()
    svc = Service("smtp", partial(serve_worker, config, listeners=listeners, link=link))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, lifetime)
        await run_services(
            [svc],
            grace_period=config.general.grace_period,
            on_started=lambda _svc, _lines: link.report(READY),
            lifetime=lifetime,
        )
        nursery.cancel_scope.cancel()
