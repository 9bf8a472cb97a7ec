"""The TFTP server as a service of ``netlab up`` and its ``[tftp]`` configuration table."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from netlab.aio.shutdown import Lifetime
from netlab.config import ConfigError, GeneralConfig, NetlabConfig, TftpConfig, load, render_toml
from servers.tftp import TftpServer, service


async def test_service_listens_on_loopback_and_creates_its_root(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = NetlabConfig(
        general=GeneralConfig(data_dir=str(tmp_path)), tftp=TftpConfig(listen="127.0.0.1:0")
    )
    svc = service(config)
    assert svc is not None
    assert svc.name == "tftp"
    lifetime = Lifetime()
    lines = await nursery.start(svc.serve, lifetime)
    assert lines[0].startswith("udp 127.0.0.1:")
    assert lines[0].endswith(f"root {tmp_path / 'tftp'}")
    assert (tmp_path / "tftp").is_dir()
    lifetime.stop()


def test_a_disabled_service_is_not_started() -> None:
    assert service(NetlabConfig(tftp=TftpConfig(enabled=False))) is None


def test_defaults_are_safe() -> None:
    config = TftpConfig()
    assert config.listen == "127.0.0.1:6969"
    assert not config.allow_upload
    assert not config.overwrite


def test_the_table_loads_and_renders(tmp_path: Path) -> None:
    path = tmp_path / "netlab.toml"
    path.write_text('[tftp]\nallow_upload = true\nmax_windowsize = 16\ntimeout = 2\nroot = "/srv/tftp"\n')
    config = load(path)
    assert config.tftp == TftpConfig(allow_upload=True, max_windowsize=16, timeout=2.0, root="/srv/tftp")
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(render_toml(config))
    assert load(rendered) == config


@pytest.mark.parametrize(
    "config",
    [
        TftpConfig(max_blksize=7),
        TftpConfig(max_windowsize=0),
        TftpConfig(timeout=0),
        TftpConfig(max_transfers=0),
        TftpConfig(listen="127.0.0.1:http"),
    ],
)
def test_impossible_settings_are_refused(config: TftpConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        TftpServer(config, tmp_path)
