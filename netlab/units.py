"""Quantities with units, as people type them on a command line, and as summaries print them.

Strategy: one small grammar, ``NUMBER[UNIT]``, and a table of units per kind of quantity.  The
rate units follow ``tc(8)``, the tool network engineers already know: ``bit``/``kbit``/``mbit``/
``gbit`` are bits per second, ``bps``/``kbps``/``mbps``/``gbps`` are *bytes* per second, the SI
prefixes are powers of 1000 and ``kibit``/``mibit``/``gibit`` powers of 1024.  A bare number is a
bit rate.  Durations take ``us``, ``ms``, ``s``, ``min``; a bare number is seconds.  Fractions take
a percent sign or a plain fraction (``5%`` = ``0.05``).  Sizes take ``k``/``m``/``g`` (powers of
1024, as ``ip``, ``ss`` and ``dd`` do) with an optional ``b``/``ib``.

The click parameter types at the bottom turn a bad value into a usage error naming the flag.
"""

from __future__ import annotations

import re
from typing import Any

import click

__all__ = [
    "DURATION",
    "FRACTION",
    "RATE",
    "SIZE",
    "format_bytes",
    "format_duration",
    "format_rate",
    "parse_duration",
    "parse_fraction",
    "parse_rate",
    "parse_size",
]

_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%µ]*)\s*$")

_RATE_UNITS = {  # multiplier to bits per second
    "": 1,
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "tbit": 1e12,
    "kibit": 2**10,
    "mibit": 2**20,
    "gibit": 2**30,
    "bps": 8,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
}


def _split(text: str, what: str) -> tuple[float, str]:
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r} as a {what}")
    return float(match.group(1)), match.group(2).lower()


def parse_rate(text: str) -> float:
    """A rate in bits per second: ``10mbit``, ``1.5gbit``, ``64kbps`` (bytes/s), ``9600``.

    Raises:
        ValueError: not a number, an unknown unit, or zero.
    """
    value, unit = _split(text, "rate")
    if unit not in _RATE_UNITS:
        raise ValueError(f"unknown rate unit {unit!r} in {text!r} (use bit, kbit, mbit, gbit or kbps...)")
    rate = value * _RATE_UNITS[unit]
    if rate <= 0:
        raise ValueError(f"a rate must be positive, got {text!r}")
    return rate


def parse_duration(text: str) -> float:
    """A duration in seconds: ``10ms``, ``2s``, ``500us``, ``1.5`` (seconds).

    Raises:
        ValueError: not a number or an unknown unit.
    """
    value, unit = _split(text, "duration")
    if unit not in _DURATION_UNITS:
        raise ValueError(f"unknown time unit {unit!r} in {text!r} (use us, ms, s or min)")
    return value * _DURATION_UNITS[unit]


def parse_fraction(text: str) -> float:
    """A probability in ``[0, 1]``: ``5%``, ``0.5%``, ``0.05``.

    Raises:
        ValueError: not a number, a unit other than ``%``, or outside ``[0, 1]``.
    """
    value, unit = _split(text, "fraction")
    if unit == "%":
        value /= 100
    elif unit:
        raise ValueError(f"a fraction is a number or a percentage, got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction must be between 0 and 1 (0% and 100%), got {text!r}")
    return value


def parse_size(text: str) -> int:
    """A size in bytes: ``1200``, ``32k``, ``60KiB``, ``1m``.

    Raises:
        ValueError: not a whole number of bytes, or an unknown unit.
    """
    value, unit = _split(text, "size")
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {text!r} (use k, m or g)")
    size = value * _SIZE_UNITS[unit]
    if size != int(size):
        raise ValueError(f"a size must be a whole number of bytes, got {text!r}")
    return int(size)


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; exact below 1 KiB."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    """Both ways people read a throughput: ``"12.5 MB/s (100.0 Mbit/s)"`` (SI, as link rates are)."""
    mbytes = bytes_per_second / 1e6
    return f"{mbytes:.2f} MB/s ({mbytes * 8:.1f} Mbit/s)"


def format_duration(seconds: float) -> str:
    """``0.0123`` -> ``"12.3 ms"``, ``2.5`` -> ``"2.50 s"``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


class _UnitType(click.ParamType):  # type: ignore[type-arg]
    def __init__(self, name: str, parse: Any) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: click types for the quantities above (``type=RATE`` etc.).
RATE = _UnitType("rate", parse_rate)
DURATION = _UnitType("duration", parse_duration)
FRACTION = _UnitType("fraction", parse_fraction)
SIZE = _UnitType("size", parse_size)
