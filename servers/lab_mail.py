"""The lab's mail exchangers: a netlab mail server for each lab mail domain (``netlab up --lab``).

Strategy: each mail domain of the lab (``alpha.test``, ``beta.test``) gets the suite's own SMTP
server with its relay (:func:`servers.smtp.serve`) and POP3 server (:func:`servers.pop3.serve`)
over a store of its own, ``<lab state>/mail/<domain>``, configured by overriding the ``[smtp]``
and ``[pop3]`` tables: the domain, its MX host name, the suite's resolver.  The SMTP servers listen
on every MX address of their domain, all on one port (:mod:`netlab.lab.ports`): 25 when the lab
has port 53, else the lab's own port.  The relays deliver on that port, so mail between the two
domains goes over MX as on the Internet: a client submits it to ``mx1.alpha.test`` (AUTH, after
STARTTLS), alpha's relay asks the resolver for ``beta.test MX``, connects to ``mail.beta.test``,
and beta's server puts it in the recipient's Maildir, where its POP3 server hands it out.

Demo users are created on first start with random passwords: stored hashed in each store's users
file as always, and in clear in ``<lab state>/mail/passwords`` (mode 0600) and on the start-up
lines, for the person trying the lab.  They start after the resolver, whose address they take
from the lab's record, and record their ports there for the suite's own relay.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import click
import trio

from netlab.aio.shutdown import Lifetime, Service
from netlab.config import NetlabConfig, override
from netlab.lab import MailDomain, record_in_lab, running_lab, state_dir
from netlab.lab.ports import TcpPort, bind_same_port, close_all, listen_tcp
from netlab.store.users import UserDb
from servers import pop3, smtp
from servers.mail_system import MailSystem

__all__ = ["DEMO_USERS", "ensure_demo_users", "passwords_path", "serve", "service"]

#: The users each lab domain starts with (local parts).  Every domain has its postmaster
#: (RFC 5321 section 4.5.1).
DEMO_USERS: dict[str, tuple[str, ...]] = {
    "alpha.test": ("alice", "postmaster"),
    "beta.test": ("bob", "postmaster"),
}
#: Seconds between delivery attempts in the lab, where nothing is far away: soon, then sparser.
RETRY_DELAYS = (10.0, 60.0, 300.0, 900.0)


def mail_root(config: NetlabConfig) -> Path:
    return state_dir(config) / "mail"


def passwords_path(config: NetlabConfig) -> Path:
    """Where the demo users' passwords are kept in clear (mode 0600)."""
    return mail_root(config) / "passwords"


def ensure_demo_users(store: Path, addresses: Iterable[str], passwords: Path) -> dict[str, str]:
    """Create the users of ``addresses`` missing from ``store`` with random passwords (blocking).

    Returns every known demo password by address, from ``passwords`` (a line "address password"
    each), which gets the new ones.
    """
    known = _read_passwords(passwords)
    users = UserDb(store / "users")
    created = False
    for address in addresses:
        if users.exists(address):
            continue
        known[address] = secrets.token_urlsafe(12)
        users.set_password(address, known[address], create=True)
        created = True
    if created:
        _write_passwords(passwords, known)
    return known


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def _write_passwords(path: Path, passwords: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{address} {password}\n" for address, password in sorted(passwords.items()))
    tmp.replace(path)


def domain_config(
    config: NetlabConfig, domain: MailDomain, store: Path, resolver: str, port: int
) -> NetlabConfig:
    """The ``[smtp]`` and ``[pop3]`` tables of the mail server of one lab domain."""
    host = domain.mx[0].name
    config = override(
        config,
        "smtp",
        {
            "store": str(store),
            "domains": [domain.domain],
            "hostname": host,
            "resolver": resolver,
            "relay_port": port,
            "retry_delays": list(RETRY_DELAYS),
            "trusted_networks": [],  # submission needs AUTH: no open relay, even in the lab
            "tls_cert": "",  # each lab server makes its own certificate, for its own name
            "tls_key": "",
        },
    )
    return override(config, "pop3", {"store": str(store), "hostname": host, "tls_cert": "", "tls_key": ""})


async def serve(config: NetlabConfig, lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
    """Run the lab's mail servers until ``lifetime`` stops (the lab must be running)."""
    lab_dir = state_dir(config)
    info = await trio.to_thread.run_sync(running_lab, config)
    if info is None:
        raise click.ClickException(f"no running lab recorded in {lab_dir}: the lab starts first")
    fallback = config.resolver.listen if config.resolver.enabled else config.smtp.resolver
    resolver = info.resolver or fallback
    mx_addresses = [host.address for domain in info.mail_domains for host in domain.mx]
    pop_addresses = [domain.mx[0].address for domain in info.mail_domains]
    bound: list[TcpPort] = []
    try:
        smtp_ports = await bind_same_port(mx_addresses, info.host_port(25), listen_tcp)
        bound += smtp_ports.values()
        # POP3 shares its hosts with SMTP, so it cannot have the lab's one high port too.
        pop3_ports = await bind_same_port(pop_addresses, 110 if info.port == 53 else 0, listen_tcp)
        bound += pop3_ports.values()
        mail_port, pop3_port = smtp_ports[mx_addresses[0]].port, pop3_ports[pop_addresses[0]].port
        lines: list[str] = []
        async with trio.open_nursery() as nursery:
            for domain in info.mail_domains:
                store = mail_root(config) / domain.domain
                users = [f"{user}@{domain.domain}" for user in DEMO_USERS.get(domain.domain, ())]
                passwords = await trio.to_thread.run_sync(
                    ensure_demo_users, store, users, passwords_path(config)
                )
                mail = MailSystem(store, [domain.domain])
                cfg = domain_config(config, domain, store, resolver, mail_port)
                smtp_listeners = [smtp_ports[host.address].listener for host in domain.mx]
                lines += await nursery.start(
                    partial(smtp.serve, cfg, lifetime, listeners=smtp_listeners, mail=mail)
                )
                pop_listeners = [pop3_ports[domain.mx[0].address].listener]
                lines += await nursery.start(
                    partial(pop3.serve, cfg, lifetime, listeners=pop_listeners, mail=mail)
                )
                lines += [
                    f"  user {user}, password {passwords.get(user, '(changed since)')}" for user in users
                ]
            await trio.to_thread.run_sync(
                partial(record_in_lab, lab_dir, mail_port=mail_port, pop3_port=pop3_port)
            )
            lines.append(f"demo passwords in {passwords_path(config)}")
            lines.append(
                f"relays look MX records up with the resolver at {resolver}, deliver on port {mail_port}"
            )
            task_status.started(lines)
    finally:
        await close_all(bound)


def service(config: NetlabConfig) -> Service | None:
    """The lab's mail servers for ``netlab up --lab``; None without the lab."""
    if not config.lab.enabled:
        return None
    return Service("lab-mail", partial(serve, config))
