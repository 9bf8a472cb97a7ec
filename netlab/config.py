"""Configuration: one TOML file with a table per service, loaded into frozen dataclasses.

Strategy: every service owns one frozen dataclass whose defaults need no configuration (loopback
addresses, a data directory under the user's home).  :class:`NetlabConfig` gathers them, one
attribute per TOML table.  Values are layered, lowest first: dataclass defaults, the TOML file
(``--config FILE`` or ``$NETLAB_CONFIG``), then command-line flags (:func:`override`).  Unknown
tables or keys and values of the wrong type are errors, not silently ignored settings.

A service adds its table by declaring its dataclass here and a field on :class:`NetlabConfig`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "DnsConfig",
    "GeneralConfig",
    "LabConfig",
    "NetlabConfig",
    "Pop3Config",
    "ProxyConfig",
    "RdtConfig",
    "ResolverConfig",
    "SmtpConfig",
    "TftpConfig",
    "data_path",
    "load",
    "override",
    "render_toml",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or flag that cannot be used, with the offending key in the text."""


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "netlab")


@dataclasses.dataclass(frozen=True)
class GeneralConfig:
    """Settings shared by every service (the ``[general]`` table)."""

    data_dir: str = dataclasses.field(default_factory=_default_data_dir)
    log_level: str = "INFO"
    #: Seconds that running sessions get to finish after Ctrl-C or SIGTERM before they are cut off.
    grace_period: float = 5.0


@dataclasses.dataclass(frozen=True)
class RdtConfig:
    """The reliable-transport receiver (``[rdt]``), the server ``netlab up`` starts."""

    enabled: bool = True
    listen: str = "127.0.0.1:9001"
    #: Where received files are written; empty means ``<data_dir>/rdt``.
    out_dir: str = ""
    #: What ``netlab rdt send`` asks for by default ("gbn", "sr" or "saw"); the receiver
    #: serves all three.
    protocol: str = "sr"
    #: The sender's window and sequence-number bits; for the receiver, the largest it accepts.
    window: int = 32
    seq_bits: int = 16
    max_retries: int = 10
    #: Bytes of payload per segment for ``netlab rdt send``; 0 picks 60 KiB towards a loopback
    #: address and 1200 (fits any IPv6 path) elsewhere.
    mss: int = 0
    #: The largest file the receiver accepts, in bytes.
    max_size: int = 1 << 30
    #: Transfers received at once; more senders are refused until one finishes.
    max_connections: int = 64
    #: Seconds a transfer may go without receiving a byte before the receiver gives up.
    idle_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class ResolverConfig:
    """The caching recursive DNS resolver (``[resolver]``), ``netlab dns resolver``."""

    enabled: bool = True
    listen: str = "127.0.0.1:5353"
    #: Root hints file; empty means the real root servers (shipped with netlab), or the lab's
    #: root when ``netlab up --lab`` runs it.
    root_hints: str = ""
    #: The port every authoritative server is asked on (glue carries addresses, not ports).
    upstream_port: int = 53
    qname_minimisation: bool = True
    #: Client networks that get answers; everyone else gets REFUSED: never an open resolver.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    cache_size: int = 200_000
    max_ttl: int = 86_400
    max_negative_ttl: int = 3_600
    #: Seconds a client's question may take before it is answered SERVFAIL.
    deadline: float = 8.0
    max_upstream_queries: int = 48
    #: One access-log line per client query.
    query_log: bool = True


@dataclasses.dataclass(frozen=True)
class DnsConfig:
    """The authoritative DNS server (``[dns]``): ``netlab dns serve``; under ``netlab up`` it
    starts only when it has zones."""

    enabled: bool = True
    listen: str = "127.0.0.1:5300"
    #: Master files to serve, each with an ``$ORIGIN`` or named ``<origin>.zone``.
    zones: tuple[str, ...] = ()
    #: The EDNS UDP payload size we advertise and the largest UDP reply we send.
    udp_payload: int = 1232
    tcp_idle_timeout: float = 10.0
    max_tcp_connections: int = 128
    query_log: bool = True
    #: Processes sharing the port with SO_REUSEPORT (``netlab dns serve`` only).
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class LabConfig:
    """The offline lab Internet (``[lab]``): root, TLD and authoritative servers on 127.0.0.x."""

    enabled: bool = False
    #: The one port of every lab server.  53 falls back to a free high port when the process may
    #: not bind it (not root, or in use); 0 always takes a free high port.
    port: int = 53
    #: Where the lab records its port and root hints; empty means ``<data_dir>/lab``.
    state_dir: str = ""
    query_log: bool = False


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """The caching HTTP proxy (``[proxy]``)."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    #: The disk cache; empty means ``<data_dir>/proxy-cache``.
    cache_dir: str = ""
    cache_mb: int = 1024
    memory_cache_mb: int = 64
    #: Bodies up to this size are also kept in memory.
    memory_object_kb: int = 1024
    #: Larger responses are forwarded but not stored.
    max_object_mb: int = 256
    #: A recursive DNS resolver (HOST:PORT) to look origins up with; empty means the system's.
    resolver: str = ""
    #: Client networks allowed to use the proxy; everyone else gets 403.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: Ports CONNECT may tunnel to.
    connect_ports: tuple[int, ...] = (443,)
    connect_timeout: float = 10.0
    #: Seconds to wait for an origin's response head, and between body chunks.
    upstream_timeout: float = 30.0
    #: Seconds a client connection may sit idle between requests.
    idle_timeout: float = 60.0
    #: Seconds a client has to send a request head once it has started one.
    request_timeout: float = 30.0
    pool_idle_timeout: float = 30.0
    pool_per_host: int = 16
    max_header_kb: int = 64
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    #: Squid-format access log file; empty means the diagnostics stream (stderr).
    access_log: str = ""
    #: Processes sharing the listening port (SO_REUSEPORT) and the cache directory.
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    """The SMTP server and its outbound relay (``[smtp]``)."""

    enabled: bool = True
    listen: str = "127.0.0.1:2525"
    #: The mail store shared with POP3; empty means ``<data_dir>/mail``.
    store: str = ""
    #: Domains whose mail is delivered here; mail for others is relayed (if allowed).
    domains: tuple[str, ...] = ("example.test",)
    #: Our name in the greeting and in Received: headers; empty means the host name.
    hostname: str = ""
    max_message_size: int = 10_240_000  # octets (the SIZE limit, RFC 1870)
    max_recipients: int = 100  # RFC 5321 section 4.5.3.1.8 asks for at least 100
    idle_timeout: float = 300.0  # seconds; RFC 5321 section 4.5.3.2.7
    #: PEM certificate and key for STARTTLS; empty: a self-signed pair made on first run.
    tls_cert: str = ""
    tls_key: str = ""
    #: Offer AUTH only inside TLS (RFC 4954 section 4 recommends it for PLAIN and LOGIN).
    auth_requires_tls: bool = True
    #: Networks (CIDR) whose clients may relay without AUTH; none by default: no open relay.
    trusted_networks: tuple[str, ...] = ()
    login_delay: float = 2.0  # seconds before answering a failed AUTH
    max_auth_failures: int = 3
    #: The recursive resolver the relay asks for MX and address records.
    resolver: str = "127.0.0.1:5353"
    relay_port: int = 25
    #: Check the certificates of the servers we relay to (lab servers are self-signed).
    relay_tls_verify: bool = False
    #: Seconds between delivery attempts, growing; the last repeats (RFC 5321 4.5.4.1).
    retry_delays: tuple[float, ...] = (900.0, 1800.0, 3600.0, 7200.0, 14400.0)
    #: Seconds after which undeliverable mail is bounced (RFC 5321 4.5.4.1: 4-5 days).
    give_up_after: float = 432_000.0
    #: Processes serving SMTP connections.  One serves about a core's worth of mail, far more
    #: than a lab needs, and keeps ``netlab up`` a single process; more are for throughput.
    workers: int = 1
    #: With several workers, pin each to a CPU of its own (on a machine they have to themselves).
    pin_workers: bool = False


@dataclasses.dataclass(frozen=True)
class Pop3Config:
    """The POP3 server (``[pop3]``)."""

    enabled: bool = True
    listen: str = "127.0.0.1:1100"
    #: The mail store shared with SMTP; empty means ``<data_dir>/mail``.
    store: str = ""
    hostname: str = ""
    #: Offer APOP (RFC 1939 section 7); it needs the secret stored (``mail adduser --apop``).
    apop: bool = False
    #: PEM certificate and key for STLS; empty: the self-signed pair of the store.
    tls_cert: str = ""
    tls_key: str = ""
    #: Accept USER/PASS and AUTH only inside TLS (RFC 2595 section 2.3).
    auth_requires_tls: bool = True
    login_delay: float = 2.0  # seconds before answering a failed login
    max_failed_logins: int = 3
    idle_timeout: float = 600.0  # seconds; RFC 1939 section 3 asks for at least 10 minutes


@dataclasses.dataclass(frozen=True)
class TftpConfig:
    """The TFTP server (``[tftp]``)."""

    enabled: bool = True
    listen: str = "127.0.0.1:6969"
    #: The one directory served; empty means ``<data_dir>/tftp`` (created on start).
    root: str = ""
    allow_upload: bool = False
    overwrite: bool = False
    #: The largest file a client may upload, in bytes.
    max_upload_size: int = 1 << 30
    #: Transfers running at once; further requests are refused until one ends.
    max_transfers: int = 100
    #: Upper limits for the blksize (RFC 2348) and windowsize (RFC 7440) options.
    max_blksize: int = 65464
    max_windowsize: int = 64
    #: Seconds before the first retransmission when the client negotiates no timeout.
    timeout: float = 1.0
    #: Consecutive timeouts before a transfer is abandoned.
    retries: int = 6


@dataclasses.dataclass(frozen=True)
class NetlabConfig:
    """The effective configuration of the whole suite: one attribute per TOML table."""

    general: GeneralConfig = dataclasses.field(default_factory=GeneralConfig)
    rdt: RdtConfig = dataclasses.field(default_factory=RdtConfig)
    resolver: ResolverConfig = dataclasses.field(default_factory=ResolverConfig)
    dns: DnsConfig = dataclasses.field(default_factory=DnsConfig)
    lab: LabConfig = dataclasses.field(default_factory=LabConfig)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    smtp: SmtpConfig = dataclasses.field(default_factory=SmtpConfig)
    pop3: Pop3Config = dataclasses.field(default_factory=Pop3Config)
    tftp: TftpConfig = dataclasses.field(default_factory=TftpConfig)


def data_path(config: NetlabConfig, explicit: str, default_subdir: str) -> Path:
    """``explicit`` if set, else ``<general.data_dir>/<default_subdir>``, with ``~`` expanded."""
    chosen = explicit or os.path.join(config.general.data_dir, default_subdir)
    return Path(chosen).expanduser()


def load(path: str | os.PathLike[str] | None = None) -> NetlabConfig:
    """Read ``path`` (or ``$NETLAB_CONFIG``, or nothing) over the defaults.

    Raises:
        ConfigError: the file cannot be read or parsed, or names unknown keys or bad values.
    """
    if path is None:
        path = os.environ.get("NETLAB_CONFIG") or None
    if path is None:
        return NetlabConfig()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {os.fspath(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from exc
    config = NetlabConfig()
    for table, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{table}: expected a [{table}] table")
        config = override(config, table, values)
    return config


def override(config: NetlabConfig, table: str, values: Mapping[str, Any]) -> NetlabConfig:
    """A copy of ``config`` with ``values`` set in ``table``; ``None`` values are left alone.

    This is how command-line flags are layered on: a flag that was not given is ``None``.

    Raises:
        ConfigError: unknown table or key, or a value of the wrong type.
    """
    tables = {f.name for f in dataclasses.fields(config)}
    if table not in tables:
        raise ConfigError(f"unknown table [{table}] (known: {', '.join(sorted(tables))})")
    section = getattr(config, table)
    hints = typing.get_type_hints(type(section))
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in hints:
            raise ConfigError(f"{table}.{key}: unknown setting")
        changes[key] = _coerce(value, hints[key], f"{table}.{key}")
    if not changes:
        return config
    return dataclasses.replace(config, **{table: dataclasses.replace(section, **changes)})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field's type, converting where TOML is looser."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        errors = []
        for arm in typing.get_args(hint):
            try:
                return _coerce(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected nothing, got {value!r}")
        return None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool):
        if type(value) is not hint:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")  # pragma: no cover


def render_toml(config: NetlabConfig) -> str:
    """The effective configuration as a TOML document that :func:`load` reads back unchanged."""
    out: list[str] = []
    for table in dataclasses.fields(config):
        section = getattr(config, table.name)
        out.append(f"[{table.name}]")
        for f in dataclasses.fields(section):
            out.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")  # pragma: no cover
