"""``netlab rdt send`` and ``netlab rdt recv --out`` as real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import communicate, free_udp_port, netlab, netlab_command, running, wait_for_line

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("protocol", ["sr", "gbn", "saw"])
def test_send_to_recv_stores_the_exact_file(tmp_path: Path, protocol: str) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3_000_000 if protocol != "saw" else 300_000))
    out = tmp_path / "received.bin"
    recv_command = netlab_command("rdt", "recv", "--listen", "127.0.0.1:0", "--out", str(out))
    with running(recv_command, stderr=subprocess.PIPE) as recv:
        port = wait_for_line(recv, r"on 127\.0\.0\.1:(\d+)")[1]
        sent = netlab("rdt", "send", str(source), "--to", f"127.0.0.1:{port}", "--protocol", protocol)
        assert sent.returncode == 0, sent.stderr
        recv_out, recv_err = communicate(recv, timeout=30)
    assert recv.returncode == 0, recv_err
    assert out.read_bytes() == source.read_bytes()
    assert "SHA-256 verified" in sent.stdout
    for line in ("goodput", "retransmissions", "RTT estimate", "dropped as corrupt"):
        assert line in sent.stdout
        assert line in recv_out
    assert "received 'source.bin'" in recv_out
    assert f"{protocol}, window" in sent.stdout


def test_send_with_nothing_listening_fails_quickly_and_clearly(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    start = time.monotonic()
    port = free_udp_port()
    sent = netlab(
        "rdt", "send", str(source), "--to", f"127.0.0.1:{port}", "--max-retries", "2", "--initial-rto", "0.2s"
    )
    assert sent.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}: no answer to our SYN after 2 retransmissions" in sent.stderr
    assert time.monotonic() - start < 20


def test_overall_timeout_flag(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    sent = netlab("rdt", "send", str(source), "--to", f"127.0.0.1:{free_udp_port()}", "--timeout", "0.5s")
    assert sent.returncode == 1
    assert "gave up after 0.5 s" in sent.stderr


def test_receiver_refusal_fails_both_sides(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 5000)
    out = tmp_path / "out.bin"
    recv_command = netlab_command(
        "rdt", "recv", "--listen", "127.0.0.1:0", "--out", str(out), "--max-size", "1k"
    )
    with running(recv_command, stderr=subprocess.PIPE) as recv:
        port = wait_for_line(recv, r"on 127\.0\.0\.1:(\d+)")[1]
        sent = netlab("rdt", "send", str(source), "--to", f"127.0.0.1:{port}")
        _, recv_err = communicate(recv, timeout=30)
    assert sent.returncode == 1
    assert "the receiver refused the file: file of 5000 bytes is over the limit of 1024" in sent.stderr
    assert recv.returncode == 1
    assert "no file received" in recv_err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "sr", "--seq-bits", "3", "--window", "8"], "allows a window of 1..4"),
        (["--protocol", "gbn", "--seq-bits", "3", "--window", "8"], "allows a window of 1..7"),
        (["--mss", "100k"], "mss must be"),
        (["--to", "127.0.0.1:99999"], "bad port"),
        (["--to", "127.0.0.1:0"], "port cannot be 0"),
    ],
)
def test_send_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    sent = netlab("rdt", "send", str(source), "--to", "127.0.0.1:9", *args)
    assert sent.returncode == 2
    assert message in sent.stderr


def test_recv_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "exists.bin"
    out.write_bytes(b"keep")
    recv = netlab("rdt", "recv", "--listen", "127.0.0.1:0", "--out", str(out))
    assert recv.returncode == 2
    assert "never overwrites" in recv.stderr
    assert out.read_bytes() == b"keep"
