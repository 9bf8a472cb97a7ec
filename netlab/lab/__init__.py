"""The offline lab Internet: a DNS root, top-level domains and authoritative servers on loopback.

Strategy: every lab name server is the suite's authoritative server (the DNS core with the
zone answers of :mod:`netlab.proto.dns_auth`) on its own address in 127.0.0.0/8, serving zone
files shipped in this package (``zones/``), so a resolver finds them the way it finds real
servers: from the root hints, through referrals and glue.  Glue carries addresses but not ports,
so all lab servers share one port: 53 when the process may bind it, else one free high port,
which :class:`LabInfo` carries to whoever resolves against the lab (and ``netlab lab up``
prints and records).  Two servers misbehave on purpose: a lame one that answers REFUSED to
everything and a dead one that swallows every UDP query (and has no TCP listener).

``start_lab`` is a trio task: ``info = await nursery.start(start_lab)``; cancel the nursery to
stop it.  The names, addresses and what each case is for are listed in the README.

The lab's hosts live beside it: the web origin (:mod:`netlab.lab.web`, serving the site of
:mod:`netlab.lab.site`) and, in ``servers/lab_mail.py``, the mail exchangers.  Whoever starts
them adds their ports to the lab's record (:func:`record_in_lab`), where clients find them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from netlab.aio.dns_authoritative import AuthoritativeHandler, load_zone_files
from netlab.aio.dns_server import DnsServer, DnsServerSettings
from netlab.aio.dns_sockets import bind_dns
from netlab.aio.endpoint import Addr, UdpEndpoint, open_udp_endpoint
from netlab.config import NetlabConfig, data_path
from netlab.lab.ports import bind_same_port, close_all
from netlab.proto.dns_auth import Authority

__all__ = [
    "MAIL_DOMAINS",
    "SERVERS",
    "WEB_ORIGIN",
    "LabHost",
    "LabInfo",
    "LabServer",
    "MailDomain",
    "record_in_lab",
    "root_hints_path",
    "running_lab",
    "start_lab",
    "state_dir",
    "zone_dir",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str


@dataclass(frozen=True)
class LabServer:
    """One lab name server: its host name and address, and the zone files it serves."""

    name: str
    address: str
    zones: tuple[str, ...]
    role: str
    #: Nothing answers: UDP queries are read and dropped (a client times out), no TCP listener.
    silent: bool = False


@dataclass(frozen=True)
class MailDomain:
    domain: str
    mx: tuple[LabHost, ...]  # in preference order


SERVERS: tuple[LabServer, ...] = (
    LabServer("a.root-servers.test", "127.0.0.2", ("root.zone",), "the root"),
    LabServer("ns1.nic.test", "127.0.0.3", ("test.zone",), "TLD test."),
    LabServer("ns1.nic.example", "127.0.0.4", ("example.zone",), "TLD example."),
    LabServer("ns1.nic.arpa", "127.0.0.5", ("arpa.zone",), "arpa. (reverse names)"),
    LabServer("ns1.shop.test", "127.0.0.10", ("shop.test.zone",), "the web origin's zone"),
    LabServer("ns1.alpha.test", "127.0.0.11", ("alpha.test.zone",), "mail domain, delegated with glue"),
    LabServer(
        "ns.beta-dns.example", "127.0.0.12", ("beta.test.zone",), "mail domain, delegated without glue"
    ),
    LabServer("ns1.cdn.example", "127.0.0.13", ("cdn.example.zone",), "end of a cross-zone CNAME chain"),
    LabServer("ns1.lame.test", "127.0.0.14", (), "lame: REFUSED to everything"),
    LabServer("ns1.dead.test", "127.0.0.15", (), "dead: never answers", silent=True),
    LabServer("ns2.backup.test", "127.0.0.16", ("backup.test.zone",), "the live one of backup.test's two"),
    LabServer("ns1.eu.shop.test", "127.0.0.17", ("eu.shop.test.zone",), "three delegations below the root"),
)
WEB_ORIGIN = LabHost("www.shop.test", "127.0.0.80")
MAIL_DOMAINS: tuple[MailDomain, ...] = (
    MailDomain(
        "alpha.test", (LabHost("mx1.alpha.test", "127.0.0.25"), LabHost("mx2.alpha.test", "127.0.0.26"))
    ),
    MailDomain("beta.test", (LabHost("mail.beta.test", "127.0.0.27"),)),
)


def state_dir(config: NetlabConfig) -> Path:
    """Where a running lab records itself (``lab.json``, ``root.hints``) for this configuration."""
    return data_path(config, config.lab.state_dir, "lab")


def running_lab(config: NetlabConfig) -> LabInfo | None:
    """The lab a ``netlab lab up`` or ``netlab up --lab`` with this configuration recorded, if any.

    Services that ``netlab up --lab`` starts after the lab find it here (the lab records itself
    before it reports started).
    """
    try:
        return LabInfo.load(state_dir(config))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def zone_dir() -> Path:
    """Where the lab's zone files are (inside the installed package)."""
    return Path(str(resources.files(__name__).joinpath("zones")))


def root_hints_path() -> Path:
    """The lab's root hints file (named.root format); it names no port."""
    return Path(str(resources.files(__name__).joinpath("root.hints")))


@dataclass(frozen=True)
class LabInfo:
    """What a client of the lab needs: where to start, on which port, and the lab's hosts."""

    port: int
    root_hints: tuple[LabHost, ...]
    servers: tuple[LabServer, ...] = SERVERS
    web_origin: LabHost = WEB_ORIGIN
    mail_domains: tuple[MailDomain, ...] = MAIL_DOMAINS
    #: Where the lab's hosts listen, recorded by whoever starts them (None: not running): the
    #: web origin's HTTP port, the mail exchangers' SMTP port and their POP3 port.
    web_port: int | None = None
    mail_port: int | None = None
    pop3_port: int | None = None
    #: The suite's resolver that resolves from this lab (HOST:PORT), once it runs.
    resolver: str = ""

    @property
    def web_url(self) -> str | None:
        """The web origin's front page, by name (None while the origin is not running)."""
        if self.web_port is None:
            return None
        port = "" if self.web_port == 80 else f":{self.web_port}"
        return f"http://{self.web_origin.name}{port}/"

    def host_port(self, well_known: int) -> int:
        """The port the lab's hosts first try for a service whose usual port is ``well_known``.

        That port itself when the lab's name servers have port 53 (the process may bind low
        ports), else the lab's one high port, so one number reaches every lab host.
        """
        return well_known if self.port == 53 else self.port

    @property
    def root_addresses(self) -> list[Addr]:
        return [(host.address, self.port) for host in self.root_hints]

    def server(self, name: str) -> LabServer:
        """The lab name server called ``name``."""
        return next(s for s in self.servers if s.name == name)

    def hints_text(self) -> str:
        """Root hints in the format of named.root (``dig``, ``drill -r``, ``--root-hints``)."""
        lines = [f"; netlab lab root hints; every lab server listens on port {self.port}"]
        lines += [f".\t3600000\tNS\t{h.name}." for h in self.root_hints]
        lines += [f"{h.name}.\t3600000\tA\t{h.address}" for h in self.root_hints]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabInfo:
        raw = json.loads(text)
        return cls(
            port=raw["port"],
            root_hints=tuple(LabHost(**h) for h in raw["root_hints"]),
            servers=tuple(LabServer(**{**s, "zones": tuple(s["zones"])}) for s in raw["servers"]),
            web_origin=LabHost(**raw["web_origin"]),
            mail_domains=tuple(
                MailDomain(m["domain"], tuple(LabHost(**h) for h in m["mx"])) for m in raw["mail_domains"]
            ),
            web_port=raw.get("web_port"),
            mail_port=raw.get("mail_port"),
            pop3_port=raw.get("pop3_port"),
            resolver=raw.get("resolver", ""),
        )

    def save(self, directory: Path) -> None:
        """Record the lab in ``directory``: ``lab.json`` and ``root.hints``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in (("lab.json", self.to_json()), ("root.hints", self.hints_text())):
            tmp = directory / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(directory / name)

    @classmethod
    def load(cls, directory: Path) -> LabInfo:
        """The lab recorded in ``directory`` by :meth:`save`."""
        return cls.from_json((directory / "lab.json").read_text(encoding="utf-8"))


def record_in_lab(directory: Path, **changes: Any) -> LabInfo:
    """Add to the running lab's record in ``directory`` (a port, an address) what was started.

    Raises:
        OSError, ValueError: no lab is recorded there.
    """
    info = dataclasses.replace(LabInfo.load(directory), **changes)
    info.save(directory)
    return info


def load_authorities(directory: Path | None = None) -> dict[str, Authority]:
    """Each lab server's zones by its address, read from ``directory`` (default: the shipped ones)."""
    directory = directory or zone_dir()
    zones = {
        name: zone
        for name in {z for s in SERVERS for z in s.zones}
        for zone in load_zone_files([directory / name])
    }
    return {spec.address: Authority(zones[name] for name in spec.zones) for spec in SERVERS}


@dataclass
class _DnsSockets:
    """One lab name server's sockets: UDP, and TCP unless it is the silent one."""

    udp: UdpEndpoint
    tcp: trio.SocketListener | None

    @property
    def port(self) -> int:
        return self.udp.local_address[1]

    async def aclose(self) -> None:
        await self.udp.aclose()
        if self.tcp is not None:
            await self.tcp.aclose()


async def _bind_server(address: str, port: int) -> _DnsSockets:
    if any(spec.silent for spec in SERVERS if spec.address == address):
        return _DnsSockets(await open_udp_endpoint(address, port), None)
    return _DnsSockets(*await bind_dns(address, port))


async def start_lab(
    *,
    port: int = 53,
    zones: Path | None = None,
    query_log: bool = False,
    task_status: trio.TaskStatus[LabInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the lab until cancelled; ``task_status.started`` gets its :class:`LabInfo`.

    Args:
        port: the one port every lab server uses.  53 falls back to a free high port shared by
            all when it cannot be bound (not root, or in use); 0 goes straight to that.
        zones: a directory of zone files to use instead of the shipped ones (same file names).
        query_log: write a query log line per query (to ``netlab.access.lab``).

    Raises:
        OSError: the given port cannot be bound on every lab address.
    """
    authorities = await trio.to_thread.run_sync(load_authorities, zones)
    sockets = await bind_same_port([s.address for s in SERVERS], port, _bind_server, fallback=port == 53)
    chosen = next(iter(sockets.values())).port
    settings = DnsServerSettings(udp_workers=2, replay_cache=2_000, query_log=query_log)
    try:
        async with trio.open_nursery() as nursery:
            for spec in SERVERS:
                bound = sockets[spec.address]
                if spec.silent:
                    nursery.start_soon(_swallow, bound.udp)
                    continue
                assert bound.tcp is not None
                server = DnsServer(AuthoritativeHandler(authorities[spec.address]), settings, name="lab")
                nursery.start_soon(server.serve_udp, bound.udp)
                await nursery.start(server.serve_tcp, [bound.tcp])
            root = SERVERS[0]
            info = LabInfo(port=chosen, root_hints=(LabHost(root.name, root.address),))
            log.info("lab up on port %d: %d servers, root %s", chosen, len(SERVERS), root.address)
            task_status.started(info)
    finally:
        await close_all(list(sockets.values()))


async def _swallow(udp: UdpEndpoint) -> None:
    """The dead server: read every query and answer none (no ICMP error either)."""
    while True:
        await udp.recvfrom()
