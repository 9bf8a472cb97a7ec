"""``netlab link``: flags, the relay on real sockets, and the command as a real process."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from clients.link import LinkSettings, parse_burst
from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.rdt import RdtListener, open_rdt_stream
from netlab.aio.rdt_stream import RdtStream
from netlab.aio.relay import LinkRelay
from netlab.link.model import GilbertElliott
from netlab.transport.engine import TransportParams
from tests.processes import communicate, netlab, netlab_command, running, wait_for_line


def test_burst_forms() -> None:
    assert parse_burst("p=1%,r=30%") == GilbertElliott(p_good_to_bad=0.01, p_bad_to_good=0.3)
    assert parse_burst("p=1%, r=30%, bad=80%, good=0.1%") == GilbertElliott(0.01, 0.3, 0.001, 0.8)
    assert parse_burst("p_good_to_bad=0.02,p_bad_to_good=0.5") == GilbertElliott(0.02, 0.5)
    ge = parse_burst("5%/4")
    assert ge.mean_loss == pytest.approx(0.05)
    assert ge.p_bad_to_good == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("q=1%", "burst is LOSS/LENGTH"),
        ("p=1%", "need at least p and r"),
        ("5%/x", "burst length"),
        ("p=2", "fraction"),
    ],
)
def test_bad_burst(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_burst(text)


def test_same_seed_same_fates() -> None:
    settings = LinkSettings(loss=0.2, reorder=0.2, delay=0.01, jitter=0.005, seed=42)
    a, b = settings.model("up"), settings.model("up")
    fates = [(a.transmit(bytes([i]), i * 0.001), b.transmit(bytes([i]), i * 0.001)) for i in range(200)]
    assert all(x == y for x, y in fates)
    assert LinkSettings(seed=1).describe().endswith("seed 1")


async def _sha_handler(stream: RdtStream) -> None:
    digest = hashlib.sha256()
    while chunk := await stream.receive_some():
        digest.update(chunk)
    await stream.send_all(digest.hexdigest().encode())
    await stream.send_eof()


@pytest.mark.timeout(120)
async def test_transfer_through_the_relay_on_real_sockets() -> None:
    data = random.Random(3).randbytes(400_000)
    settings = LinkSettings(loss=0.05, reorder=0.1, duplicate=0.02, corrupt=0.02, delay=0.002, seed=7)
    up, down = settings.model("up"), settings.model("down")
    async with trio.open_nursery() as nursery:
        server_ep = await open_udp_endpoint("127.0.0.1", 0)
        listener = RdtListener(server_ep, TransportParams(mss=65000))
        await nursery.start(listener.serve, _sha_handler)
        relay = LinkRelay(
            await open_udp_endpoint("127.0.0.1", 0),
            server_ep.local_address,
            upstream=up,
            downstream=down,
            open_endpoint=lambda: open_udp_endpoint("127.0.0.1", 0),
        )
        await nursery.start(relay.run)
        params = TransportParams(mss=8000, window=16, min_rto=0.05, initial_rto=0.2)
        with trio.fail_after(90):
            stream = await open_rdt_stream(*relay.listen.local_address, params)
            await stream.send_all(data)
            await stream.send_eof()
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
            await stream.aclose()
        assert answer == hashlib.sha256(data).hexdigest().encode()
        assert up.stats.lost > 0
        assert up.stats.reordered > 0
        assert stream.connection.stats.retransmissions > 0
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(120)
def test_netlab_link_command_between_send_and_recv(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(1_000_000))
    out = tmp_path / "received.bin"
    recv_command = netlab_command("rdt", "recv", "--listen", "127.0.0.1:0", "--out", str(out))
    with running(recv_command, stderr=subprocess.PIPE) as recv:
        port = wait_for_line(recv, r"on 127\.0\.0\.1:(\d+)")[1]
        link_args = [
            "--listen",
            "127.0.0.1:0",
            "--to",
            f"127.0.0.1:{port}",
            "--loss",
            "3%",
            "--reorder",
            "5%",
        ]
        link_args += [
            "--corrupt",
            "1%",
            "--duplicate",
            "1%",
            "--delay",
            "2ms",
            "--jitter",
            "1ms",
            "--seed",
            "5",
        ]
        with running(netlab_command("link", *link_args), stderr=subprocess.PIPE) as link:
            relay_port = wait_for_line(link, r"relaying 127\.0\.0\.1:(\d+)")[1]
            sent = netlab("rdt", "send", str(source), "--to", f"127.0.0.1:{relay_port}", "--mss", "8k")
            communicate(recv, timeout=30)
            link.send_signal(signal.SIGTERM)  # stopped by its PID, as a user would
            link_out, link_err = communicate(link, timeout=30)
    assert sent.returncode == 0, sent.stderr
    assert recv.returncode == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert link.returncode == 0, link_err
    assert "link: 1 client(s)" in link_out
    assert "client -> server:" in link_out
    assert " lost, " in link_out
