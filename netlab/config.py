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
    "GeneralConfig",
    "NetlabConfig",
    "RdtConfig",
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
    protocol: str = "sr"
    window: int = 32
    seq_bits: int = 16
    max_retries: int = 10


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
