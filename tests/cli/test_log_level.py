"""``general.log_level`` applies to every command that reads the configuration; ``--log-level`` wins."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from netlab.cli import main
from tests.processes import isolated_config, read_until, spawn, stop


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def _config(tmp_path: Path, level: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[general]\nlog_level = "{level}"\n')
    return path


@pytest.mark.parametrize(
    ("flags", "configured", "effective"),
    [
        ([], "WARNING", logging.WARNING),
        ([], "debug", logging.DEBUG),
        (["--log-level", "ERROR"], "DEBUG", logging.ERROR),
        (["--log-level", "INFO"], "ERROR", logging.INFO),
    ],
)
def test_configured_level_unless_the_flag_is_given(
    tmp_path: Path, flags: list[str], configured: str, effective: int
) -> None:
    path = _config(tmp_path, configured)
    result = CliRunner().invoke(main, [*flags, "config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == effective


def test_unknown_level_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "show", "--config", str(_config(tmp_path, "LOUD"))])
    assert result.exit_code == 2
    assert "general.log_level" in result.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("server", ["smtpd", "pop3d"])
@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_standalone_servers_log_at_the_configured_level(tmp_path: Path, server: str, level: str) -> None:
    config = isolated_config(tmp_path)
    config.write_text(config.read_text().replace('log_level = "INFO"', f'log_level = "{level}"'))
    assert f'log_level = "{level}"' in config.read_text()
    stderr = tmp_path / "stderr"
    proc = spawn(server, "--config", str(config), stderr=stderr)
    try:
        read_until(proc, "://127.0.0.1:")
    finally:
        assert stop(proc) == 0
    # Stopping logs "SIGTERM: shutting down" at INFO.
    assert ("shutting down" in stderr.read_text()) == (level == "INFO")
