"""``netlab proxy`` as a program: it starts, says where it listens, serves, and stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from netlab.config import NetlabConfig, ProxyConfig
from servers.proxy import service

ROOT = Path(__file__).resolve().parents[3]


def test_help_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netlab", "proxy", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--cache-dir" in result.stdout
    assert "--resolver" in result.stdout


def test_service_is_none_when_disabled() -> None:
    assert service(NetlabConfig(proxy=ProxyConfig(enabled=False))) is None
    enabled = service(NetlabConfig())
    assert enabled is not None
    assert enabled.name == "proxy"


async def status_page(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /netlab/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    return bytes(data)


async def read_line(process: trio.Process) -> str:
    assert process.stdout is not None
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        if not chunk:
            break
        line += chunk
    return line.decode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
async def test_serves_until_sigterm(tmp_path: Path, workers: int) -> None:
    if workers == 1:
        listen = "127.0.0.1:0"
    else:
        with socket.socket() as s:  # --workers needs a fixed port to share
            s.bind(("127.0.0.1", 0))
            listen = f"127.0.0.1:{s.getsockname()[1]}"
    command = [
        sys.executable, "-m", "netlab", "proxy", "--listen", listen, "--cache-dir", str(tmp_path / "cache"),
        "--access-log", str(tmp_path / "access.log"), "--workers", str(workers),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(30):
            line = await read_line(process)
            assert line.startswith("proxy    http://127.0.0.1:")
            port = int(line.split(":")[2].split("/")[0])
            pages = [await status_page(port) for _ in range(4)]
        assert all(page.startswith(b"HTTP/1.1 200 ") for page in pages)
        assert b"netlab proxy" in pages[-1]
        assert (b"<th>Worker processes</th><td>2:" in pages[-1]) is (workers == 2)
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            code = await process.wait()
    assert code == 0
    log = (tmp_path / "access.log").read_text().splitlines()
    assert len(log) == 4
    assert all(" NONE/200 " in line and "/netlab/status" in line for line in log)
