"""netlab's TFTP server and client against the standard tools: tftp-hpa's client, atftp, and
tftpd-hpa's in.tftpd, all on loopback ports of their own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.proto.tftp_packet import Error, ErrorCode, Opcode, Request, decode_packet_untrusted, encode
from tests.conftest import require_tool
from tests.processes import communicate, free_udp_port, netlab, netlab_command, running, stop, wait_for_line
from tests.tftp_support import netlab_tftpd, sha256

pytestmark = pytest.mark.interop

TOOL_TIMEOUT = 120  # seconds for one run of a standard tool
TEXT = b"first line\nsecond line\n\nbare\rcarriage return\nlast line without newline"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    path.chmod(0o777)  # in.tftpd works as "nobody"
    files = {"text.txt": TEXT, "random.bin": os.urandom(1_000_000), "small.bin": os.urandom(5000)}
    files["medium.bin"] = os.urandom(40_000)
    files |= {f"size{n}.bin": os.urandom(n) for n in (0, 511, 512, 513)}
    for name, content in files.items():
        (path / name).write_bytes(content)
        (path / name).chmod(0o644)
    return path


@pytest.fixture
def server(root: Path) -> Iterator[str]:
    """``netlab tftpd`` serving ``root``, uploads allowed."""
    with netlab_tftpd(root, "--allow-upload") as address:
        yield address


def split(address: str) -> tuple[str, str]:
    host, port = address.rsplit(":", 1)
    return host, port


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)


# -- tftp-hpa's client against netlab tftpd -----------------------------------------------------


@pytest.mark.parametrize("mode", ["octet", "netascii"])
def test_tftp_hpa_get_and_put(server: str, root: Path, tmp_path: Path, mode: str) -> None:
    tftp = require_tool("tftp", "tftp-hpa")
    host, port = split(server)
    name = "text.txt" if mode == "netascii" else "random.bin"
    local = tmp_path / "got"
    got = run([tftp, "-m", mode, host, port, "-c", "get", name, str(local)])
    assert got.returncode == 0, got.stderr
    assert local.read_bytes() == (root / name).read_bytes()  # netascii: LF here, CR LF on the wire
    put = run([tftp, "-m", mode, host, port, "-c", "put", str(local), f"put-{mode}"])
    assert put.returncode == 0, put.stderr
    assert (root / f"put-{mode}").read_bytes() == local.read_bytes()


# -- atftp against netlab tftpd -----------------------------------------------------------------


def atftp(
    address: str, *args: str, options: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [require_tool("atftp", "atftp")]
    for name, value in (options or {}).items():
        command += ["--option", f"{name} {value}".strip()]
    return run([*command, *args, *split(address)])


@pytest.mark.parametrize(
    ("name", "options", "negotiated"),
    [
        ("small.bin", {"blksize": "8"}, "blksize=8"),
        ("random.bin", {"blksize": "1428"}, "blksize=1428"),
        ("random.bin", {"blksize": "65464"}, "blksize=65464"),
        ("random.bin", {"blksize": "1428", "windowsize": "1"}, "windowsize=1"),
        ("random.bin", {"blksize": "1428", "windowsize": "4"}, "windowsize=4"),
        ("random.bin", {"blksize": "1428", "windowsize": "16"}, "windowsize=16"),
        ("random.bin", {"tsize": ""}, "tsize: 1000000"),
        ("random.bin", {"timeout": "2"}, "timeout=2"),
        ("size0.bin", {}, ""),
        ("size511.bin", {}, ""),
        ("size512.bin", {"tsize": ""}, "tsize: 512"),
        ("size513.bin", {"blksize": "512"}, "blksize=512"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(v) or "no-options",
)
def test_atftp_get(
    server: str, root: Path, tmp_path: Path, name: str, options: dict[str, str], negotiated: str
) -> None:
    local = tmp_path / "got"
    result = atftp(server, "--trace", "-g", "-r", name, "-l", str(local), options=options)
    assert result.returncode == 0, result.stderr
    assert sha256(local) == sha256(root / name)
    oack = next((line for line in result.stderr.splitlines() if line.startswith("received OACK")), "")
    key, _, value = negotiated.replace(": ", "=").partition("=")
    assert (f"{key}: {value}" in oack) if key else oack == ""


@pytest.mark.parametrize("options", [{}, {"blksize": "1428", "windowsize": "8", "tsize": ""}], ids=str)
def test_atftp_put(server: str, root: Path, options: dict[str, str]) -> None:
    result = atftp(server, "-p", "-l", str(root / "random.bin"), "-r", "uploaded.bin", options=options)
    assert result.returncode == 0, result.stderr
    assert sha256(root / "uploaded.bin") == sha256(root / "random.bin")


@pytest.mark.timeout(300)
def test_atftp_40_mib_at_blksize_512_rolls_block_numbers_over(
    server: str, root: Path, tmp_path: Path
) -> None:
    # 81,920 blocks of 512 bytes: the block number passes 65535 and starts again at 0.
    big = root / "forty.bin"
    with big.open("wb") as f:
        for _ in range(40):
            f.write(os.urandom(1 << 20))
    big.chmod(0o644)
    local = tmp_path / "forty.bin"
    result = atftp(server, "-g", "-r", "forty.bin", "-l", str(local), options={"blksize": "512"})
    assert result.returncode == 0, result.stderr
    assert sha256(local) == sha256(big)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"blksize": "7"}, "blksize 7 is outside 8-65464"),
        ({"blksize": "65465"}, "blksize 65465 is outside 8-65464"),
        ({"timeout": "0"}, "timeout 0 is outside 1-255"),
        ({"windowsize": "0"}, "windowsize 0 is outside 1-65535"),
    ],
)
def test_atftp_out_of_range_options_are_refused(
    server: str, tmp_path: Path, options: dict[str, str], message: str
) -> None:
    result = atftp(server, "-g", "-r", "random.bin", "-l", str(tmp_path / "x"), options=options)
    assert result.returncode != 0
    assert message in result.stderr
    assert request_error(server, options) == ErrorCode.OPTION_REFUSED


@pytest.mark.parametrize(
    ("name", "message"),
    [("../etc/passwd", "'..' is not allowed"), ("/etc/passwd", "absolute paths are not allowed")],
)
def test_atftp_path_traversal_is_refused(server: str, tmp_path: Path, name: str, message: str) -> None:
    result = atftp(server, "-g", "-r", name, "-l", str(tmp_path / "x"))
    assert result.returncode != 0
    assert message in result.stderr
    assert request_error(server, {}, name) == ErrorCode.ACCESS_VIOLATION


def request_error(address: str, options: dict[str, str], name: str = "random.bin") -> int:
    """The error code netlab tftpd answers a request with (atftp prints only the message)."""
    host, port = split(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(encode(Request(Opcode.RRQ, name, "octet", options)), (host, int(port)))
        reply = decode_packet_untrusted(s.recv(65536))
    assert isinstance(reply, Error)
    return reply.code


@pytest.mark.timeout(300)
def test_atftp_50_simultaneous_downloads(server: str, root: Path, tmp_path: Path) -> None:
    atftp_path = require_tool("atftp", "atftp")
    host, port = split(server)
    variants = [[], ["--option", "blksize 1428"], ["--option", "blksize 1428", "--option", "windowsize 8"]]
    procs = []
    for i in range(50):
        local = tmp_path / f"copy{i}"
        command = [atftp_path, *variants[i % 3], "-g", "-r", "random.bin", "-l", str(local), host, port]
        procs.append((local, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    expected = sha256(root / "random.bin")
    try:
        for local, proc in procs:
            assert proc.wait(timeout=TOOL_TIMEOUT) == 0, proc.stderr.read() if proc.stderr else ""
            assert sha256(local) == expected
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


# -- netlab tftp against in.tftpd ---------------------------------------------------------------


@contextlib.contextmanager
def in_tftpd(root: Path) -> Iterator[str]:
    """tftpd-hpa in the foreground on a free port, creating files allowed; stopped by PID."""
    binary = require_tool("in.tftpd", "tftpd-hpa")
    port = free_udp_port()
    command = [binary, "-L", "-a", f"127.0.0.1:{port}", "-s", "-c", "-u", "nobody", "-B", "65464", str(root)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_tftp_answers(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc, timeout=10)


def _wait_until_tftp_answers(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Ask for a file that is not there until the server answers (it has no readiness signal)."""
    probe = encode(Request(Opcode.RRQ, "no-such-file-probe", "octet", {}))
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"in.tftpd exited with status {proc.returncode}"
            s.sendto(probe, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                if isinstance(decode_packet_untrusted(s.recv(1024)), Error):
                    return
    raise AssertionError("in.tftpd never answered")


def netlab_tftp(*args: str) -> subprocess.CompletedProcess[str]:
    return netlab("tftp", *args, timeout=TOOL_TIMEOUT)


@pytest.mark.parametrize(
    "flags",
    [
        ["--no-tsize"],
        ["--blksize", "1428", "--timeout", "2"],
        ["--blksize", "65464", "--tsize"],
        ["--windowsize", "16"],  # tftpd-hpa 5.2 ignores windowsize: the client carries on
    ],
    ids=" ".join,
)
def test_netlab_client_against_tftpd_hpa(root: Path, tmp_path: Path, flags: list[str]) -> None:
    with in_tftpd(root) as address:
        got = netlab_tftp("get", *flags, address, "random.bin", str(tmp_path / "got"))
        assert got.returncode == 0, got.stderr
        assert sha256(tmp_path / "got") == sha256(root / "random.bin")
        name = f"up-{len(flags)}-{flags[0].strip('-')}.bin"
        put = netlab_tftp("put", *flags, address, name, str(tmp_path / "got"))
        assert put.returncode == 0, put.stderr
        assert sha256(root / name) == sha256(root / "random.bin")
        missing = netlab_tftp("get", *flags, address, "missing.bin", str(tmp_path / "missing"))
        assert missing.returncode == 1
        assert "error 1 (File not found)" in missing.stderr


def test_netlab_client_netascii_against_tftpd_hpa(root: Path, tmp_path: Path) -> None:
    with in_tftpd(root) as address:
        got = netlab_tftp("get", "--mode", "netascii", address, "text.txt", str(tmp_path / "text"))
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "text").read_bytes() == TEXT
        put = netlab_tftp("put", "--mode", "netascii", address, "text-up.txt", str(tmp_path / "text"))
        assert put.returncode == 0, put.stderr
        assert (root / "text-up.txt").read_bytes() == TEXT


# -- across the link emulator -----------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("name", "flags"),
    [
        # Lockstep recovers only by timeout (RFC 1350), about 1 s per loss: a small file.
        ("medium.bin", ["--blksize", "1428"]),
        ("random.bin", ["--windowsize", "8", "--blksize", "1428"]),
    ],
    ids=["lockstep", "window8"],
)
def test_transfer_across_netlab_link_with_loss_and_reordering(
    server: str, root: Path, tmp_path: Path, name: str, flags: list[str]
) -> None:
    """Get and put through ``netlab link`` with 10% loss and reordering both ways.

    The server answers from a fresh port per transfer (its TID); the relay follows it.
    """
    impairments = ["--loss", "10%", "--reorder", "10%", "--delay", "1ms", "--jitter", "1ms", "--seed", "7"]
    link_command = netlab_command("link", "--listen", "127.0.0.1:0", "--to", server, *impairments)
    with running(link_command, stderr=subprocess.PIPE) as link:
        relay_port = wait_for_line(link, r"relaying 127\.0\.0\.1:(\d+)")[1]
        relay = f"127.0.0.1:{relay_port}"
        got = netlab_tftp("get", "--timeout", "1", *flags, relay, name, str(tmp_path / "got"))
        assert got.returncode == 0, got.stderr
        assert sha256(tmp_path / "got") == sha256(root / name)
        put = netlab_tftp("put", "--timeout", "1", *flags, relay, "through-link.bin", str(tmp_path / "got"))
        assert put.returncode == 0, put.stderr
        assert sha256(root / "through-link.bin") == sha256(root / name)
        link.send_signal(signal.SIGTERM)
        out, _ = communicate(link, timeout=30)
    lost = [int(n) for n in re.findall(r"(\d+) lost, ", out)]
    assert len(lost) == 2  # both directions reported ...
    assert sum(lost) > 0  # ... and the link really dropped datagrams on the way
