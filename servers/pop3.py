"""``netlab pop3d``: the POP3 server over the shared mail store.

Strategy: :func:`serve` opens the store and the STLS certificate (the store's self-signed one
unless configured), then accepts connections, one task each (:mod:`servers.pop3_session`).  At
shutdown it stops accepting and closes idle sessions; a session in the middle of a command
finishes it.  Sessions that end without QUIT delete nothing (RFC 1939 section 6).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import click
import trio

from netlab.addr import parse_hostport
from netlab.aio.shutdown import Lifetime, Service, serve_connections
from netlab.cli import config_option, load_config
from netlab.config import NetlabConfig, Pop3Config, data_path
from servers.mail_system import MailSystem
from servers.pop3_session import Pop3ServerContext, handle_connection
from servers.smtp import listener_lines, run_alone, tls_context

__all__ = ["command", "serve", "service"]

log = logging.getLogger(__name__)


async def serve(
    config: NetlabConfig,
    lifetime: Lifetime,
    *,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] | None = None,
    mail: MailSystem | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the POP3 server until ``lifetime.stopping``, then drain."""
    cfg = config.pop3
    hostname = cfg.hostname or socket.gethostname()
    mail = mail or MailSystem(data_path(config, cfg.store, "mail"), ())
    ssl_ctx = await trio.to_thread.run_sync(tls_context, cfg.tls_cert, cfg.tls_key, mail.root, hostname)
    ctx = Pop3ServerContext(config=cfg, hostname=hostname, mail=mail, ssl_context=ssl_ctx)
    if listeners is None:
        host, port = parse_hostport(cfg.listen, default_port=1100)
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    lines = listener_lines("pop3", listeners)
    lines[0] += f" (store {mail.root})"
    await serve_connections(
        partial(handle_connection, ctx=ctx),
        listeners,
        lifetime,
        started=partial(task_status.started, lines),
        closing=ctx.waits.shut_down,
    )
    log.info("pop3: stopped (%s)", dict(ctx.stats))


def service(config: NetlabConfig) -> Service | None:
    """The POP3 server for ``netlab up``; None when ``[pop3] enabled = false``."""
    if not config.pop3.enabled:
        return None
    return Service("pop3", partial(serve, config))


@click.command("pop3d")
@config_option
@click.option("--listen", help=f"HOST:PORT to accept POP3 on [{Pop3Config.listen}].")
@click.option("--store", help="The mail store directory [<data_dir>/mail].")
@click.option("--apop/--no-apop", default=None, help="Offer APOP (RFC 1939 section 7).")
@click.option("--allow-plaintext", is_flag=True, default=None, help="Accept USER/PASS and AUTH without STLS.")
def command(
    config_file: Path | None,
    listen: str | None,
    store: str | None,
    apop: bool | None,
    allow_plaintext: bool | None,
) -> None:
    """Run the POP3 server until Ctrl-C."""
    config = load_config(
        config_file,
        {
            "pop3": {
                "listen": listen,
                "store": store,
                "apop": apop,
                "auth_requires_tls": False if allow_plaintext else None,
                "enabled": True,
            }
        },
    )
    run_alone(config, Service("pop3", partial(serve, config)))
