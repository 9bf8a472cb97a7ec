"""Units as typed on a command line: rates as tc(8) reads them, durations, fractions, sizes."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from netlab.units import (
    FRACTION,
    RATE,
    format_bytes,
    format_duration,
    format_rate,
    parse_duration,
    parse_fraction,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("10mbit", 10e6),
        ("10Mbit", 10e6),
        ("1.5gbit", 1.5e9),
        ("500kbit", 500e3),
        ("9600", 9600.0),
        ("64kbps", 512e3),  # tc: kbps are kilo*bytes* per second
        ("1mibit", 2**20),
        (" 2 mbit ", 2e6),
    ],
)
def test_rates(text: str, bps: float) -> None:
    assert parse_rate(text) == pytest.approx(bps)


@pytest.mark.parametrize("text", ["", "fast", "10 furlongs", "0mbit", "-1mbit", "1e"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10ms", 0.010), ("2s", 2.0), ("500us", 0.0005), ("1.5", 1.5), ("1min", 60.0), ("0", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10 parsecs", "ms", "-5ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|time unit"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "p"), [("5%", 0.05), ("0.5%", 0.005), ("0.05", 0.05), ("100%", 1.0), ("0", 0.0)]
)
def test_fractions(text: str, p: float) -> None:
    assert parse_fraction(text) == pytest.approx(p)


@pytest.mark.parametrize("text", ["101%", "1.5", "5 percent", "x%"])
def test_bad_fractions(text: str) -> None:
    with pytest.raises(ValueError, match="fraction"):
        parse_fraction(text)


@pytest.mark.parametrize(("text", "n"), [("1200", 1200), ("32k", 32768), ("60KiB", 61440), ("1m", 1 << 20)])
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_size_must_be_whole_bytes() -> None:
    with pytest.raises(ValueError, match="whole"):
        parse_size("0.3k")


def test_formatting() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"
    assert format_rate(12.5e6) == "12.50 MB/s (100.0 Mbit/s)"
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(2.5) == "2.50 s"
    assert format_duration(5e-5) == "50 us"


def test_click_types_report_the_flag() -> None:
    @click.command()
    @click.option("--rate", type=RATE)
    @click.option("--loss", type=FRACTION, default="0%")
    def cmd(rate: float, loss: float) -> None:
        click.echo(f"{rate} {loss}")

    runner = CliRunner()
    ok = runner.invoke(cmd, ["--rate", "10mbit", "--loss", "5%"])
    assert ok.exit_code == 0
    assert ok.output.split() == ["10000000.0", "0.05"]
    bad = runner.invoke(cmd, ["--rate", "lots"])
    assert bad.exit_code == 2
    assert "--rate" in bad.output
