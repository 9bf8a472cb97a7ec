"""Configuration: defaults, the TOML file, flags on top, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab import config as configmod
from netlab.addr import format_hostport, is_loopback, parse_hostport


def test_defaults_need_no_configuration_and_listen_on_loopback() -> None:
    config = configmod.load(None)
    for table in vars(config).values():
        listen = getattr(table, "listen", None)
        if listen is not None:
            assert is_loopback(parse_hostport(listen)[0]), listen


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "netlab.toml"
    path.write_text('[general]\ngrace_period = 2\n[rdt]\nwindow = 8\nlisten = "127.0.0.1:7000"\n')
    config = configmod.load(path)
    assert config.general.grace_period == 2.0
    assert config.rdt.window == 8
    config = configmod.override(config, "rdt", {"window": 16, "listen": None})
    assert config.rdt.window == 16
    assert config.rdt.listen == "127.0.0.1:7000"  # a flag that was not given changes nothing


def test_render_round_trips(tmp_path: Path) -> None:
    config = configmod.override(configmod.load(None), "rdt", {"protocol": "gbn", "out_dir": 'a "b" \\c'})
    path = tmp_path / "shown.toml"
    path.write_text(configmod.render_toml(config))
    assert configmod.load(path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nosuch]\nx = 1\n", "unknown table [nosuch]"),
        ("[rdt]\nwindoww = 3\n", "rdt.windoww: unknown setting"),
        ('[rdt]\nwindow = "3"\n', "rdt.window: expected int"),
        ("[rdt]\nenabled = 1\n", "rdt.enabled: expected bool"),
        ("[rdt\n", "netlab.toml"),
        ("rdt = 3\n", "expected a [rdt] table"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "netlab.toml"
    path.write_text(text)
    with pytest.raises(configmod.ConfigError, match=message.replace("[", r"\[")):
        configmod.load(path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(configmod.ConfigError, match="cannot read"):
        configmod.load(tmp_path / "absent.toml")


def test_data_path_defaults_under_data_dir(tmp_path: Path) -> None:
    config = configmod.override(configmod.load(None), "general", {"data_dir": str(tmp_path)})
    assert configmod.data_path(config, "", "rdt") == tmp_path / "rdt"
    assert configmod.data_path(config, str(tmp_path / "x"), "rdt") == tmp_path / "x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:53", ("127.0.0.1", 53)),
        ("[::1]:8080", ("::1", 8080)),
        ("::1", ("::1", 99)),
        ("localhost", ("localhost", 99)),
        (":6969", ("127.0.0.1", 6969)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, default_port=99) == expected
    host, port = expected
    assert parse_hostport(format_hostport(host, port)) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "host:99999", "host:x", "[::1", "[::1]x"])
def test_parse_hostport_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"address|port"):
        parse_hostport(text)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.com")
