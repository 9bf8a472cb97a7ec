"""curl through the real proxy, on real sockets, against an origin the test starts."""

from __future__ import annotations

import hashlib
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

from netlab.config import ProxyConfig
from tests.conftest import require_tool
from tests.interop.proxy_env import real_proxy, serve_origin, tool_env
from tests.servers.proxy.harness import Origin, Reply, Seen

pytestmark = pytest.mark.interop


@dataclass
class CurlResult:
    code: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str


async def curl(tmp_path: Path, proxy_url: str, url: str, *args: str, read_body: bool = True) -> CurlResult:
    """Run curl through the proxy; the body is read back unless ``read_body`` is false (it is
    then left in ``tmp_path / "body.bin"``)."""
    tool = require_tool("curl", "curl")
    head, body = tmp_path / "head.txt", tmp_path / "body.bin"
    head.unlink(missing_ok=True)
    body.unlink(missing_ok=True)
    command = [tool, "-sS", "--max-time", "60", "-x", proxy_url, "-D", str(head), "-o", str(body), *args, url]
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, env=tool_env()
    )
    blocks = head.read_bytes().decode("latin-1").split("\r\n\r\n") if head.exists() else [""]
    final = [
        b
        for b in blocks
        if b.startswith("HTTP/") and not b.startswith(("HTTP/1.1 100", "HTTP/1.1 200 Connection established"))
    ]
    status, headers = 0, {}
    if final:
        lines = final[-1].split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return CurlResult(
        done.returncode,
        status,
        headers,
        body.read_bytes() if read_body and body.exists() else b"",
        done.stderr.decode(),
    )


async def test_miss_then_hit_and_304_revalidation(tmp_path: Path) -> None:
    origin = Origin()
    origin.route(
        "/fresh", Reply(200, [("Cache-Control", "max-age=3600"), ("Content-Type", "text/plain")], b"fresh")
    )

    def revalidated(seen: Seen) -> Reply:
        if seen.headers.get("if-none-match") == '"r1"':
            return Reply(304, [("ETag", '"r1"'), ("Cache-Control", "max-age=0")])
        return Reply(200, [("ETag", '"r1"'), ("Cache-Control", "max-age=0")], b"always checked")

    origin.route("/check", revalidated)
    async with trio.open_nursery() as nursery, real_proxy(tmp_path) as proxy:
        port = await serve_origin(nursery, origin)
        base = f"http://127.0.0.1:{port}"
        first = await curl(tmp_path, proxy.url, f"{base}/fresh")
        second = await curl(tmp_path, proxy.url, f"{base}/fresh")
        assert (first.code, first.body, first.headers["x-cache"]) == (0, b"fresh", "MISS from netlab")
        assert (second.body, second.headers["x-cache"]) == (b"fresh", "HIT from netlab")
        assert "age" in second.headers
        await curl(tmp_path, proxy.url, f"{base}/check")
        checked = await curl(tmp_path, proxy.url, f"{base}/check")
        assert checked.body == b"always checked"
        assert origin.requests("/check")[1].headers["if-none-match"] == '"r1"'
        tags = await proxy.logged(4)
        assert tags == ["TCP_MISS/200", "TCP_MEM_HIT/200", "TCP_MISS/200", "TCP_REFRESH_UNMODIFIED/200"]
        nursery.cancel_scope.cancel()


async def test_vary_post_invalidation_and_chunked(tmp_path: Path) -> None:
    origin = Origin()
    origin.route(
        "/lang",
        lambda seen: Reply(
            200,
            [("Cache-Control", "max-age=3600"), ("Vary", "Accept-Language")],
            seen.headers.get("accept-language", "-").encode(),
        ),
    )
    origin.route(
        "/doc",
        lambda seen: Reply(
            200, [("Cache-Control", "max-age=3600")], f"{seen.method} {seen.body.decode()}".encode()
        ),
    )
    chunks = [bytes([65 + i]) * 3000 for i in range(20)]
    origin.route("/chunked", Reply(200, [("Cache-Control", "max-age=3600")], chunks, chunked=True))
    async with trio.open_nursery() as nursery, real_proxy(tmp_path) as proxy:
        base = f"http://127.0.0.1:{await serve_origin(nursery, origin)}"
        fr = await curl(tmp_path, proxy.url, f"{base}/lang", "-H", "Accept-Language: fr")
        de = await curl(tmp_path, proxy.url, f"{base}/lang", "-H", "Accept-Language: de")
        fr2 = await curl(tmp_path, proxy.url, f"{base}/lang", "-H", "Accept-Language: fr")
        assert (fr.body, de.body, fr2.body) == (b"fr", b"de", b"fr")
        assert fr2.headers["x-cache"].startswith("HIT")
        assert len(origin.requests("/lang")) == 2

        await curl(tmp_path, proxy.url, f"{base}/doc")
        posted = await curl(tmp_path, proxy.url, f"{base}/doc", "--data-binary", "x=1")
        after = await curl(tmp_path, proxy.url, f"{base}/doc")
        assert posted.body == b"POST x=1"
        assert after.headers["x-cache"].startswith("MISS")  # the POST invalidated it
        assert [s.method for s in origin.requests("/doc")] == ["GET", "POST", "GET"]

        first = await curl(tmp_path, proxy.url, f"{base}/chunked")
        again = await curl(tmp_path, proxy.url, f"{base}/chunked")
        assert first.headers.get("transfer-encoding") == "chunked"
        assert first.body == again.body == b"".join(chunks)
        assert again.headers["content-length"] == str(len(first.body))
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(240)
async def test_50_mb_download_streams_with_bounded_memory(tmp_path: Path) -> None:
    block = bytes(range(256)) * 256  # 64 KiB, sent over and over
    count = 50 * 16
    origin = Origin()
    origin.route(
        "/big",
        Reply(
            200,
            [("Cache-Control", "max-age=3600"), ("Content-Length", str(len(block) * count))],
            [block] * count,
            chunked=True,
        ),
    )
    expected = hashlib.sha256(block * count).hexdigest()
    async with trio.open_nursery() as nursery, real_proxy(tmp_path) as proxy:
        base = f"http://127.0.0.1:{await serve_origin(nursery, origin)}"
        digests: list[str] = []
        peaks: list[int] = []
        for _ in range(2):  # a miss (streamed and stored), then a hit (streamed from disk)
            tracemalloc.start()
            try:
                result = await curl(tmp_path, proxy.url, f"{base}/big", read_body=False)
                await proxy.logged(len(peaks) + 1)
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            assert result.code == 0
            digests.append(_sha256_of(tmp_path / "body.bin"))
        assert digests == [expected, expected]
        peak_miss, peak_hit = peaks
        assert await proxy.logged(2) == ["TCP_MISS/200", "TCP_HIT/200"]
        # The proxy (and the origin, in this process too) never held more than a few chunks.
        assert peak_miss < 8 * 2**20, peak_miss
        assert peak_hit < 8 * 2**20, peak_hit
        nursery.cancel_scope.cancel()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def test_origin_reset_mid_body_reaches_the_client_and_nothing_is_stored(tmp_path: Path) -> None:
    origin = Origin()
    body = [b"z" * 10_000] * 10
    origin.route(
        "/reset",
        Reply(
            200,
            [("Cache-Control", "max-age=3600"), ("Content-Length", "100000")],
            body,
            chunked=True,
            reset_after=35_000,
        ),
    )
    async with trio.open_nursery() as nursery, real_proxy(tmp_path) as proxy:
        base = f"http://127.0.0.1:{await serve_origin(nursery, origin)}"
        broken = await curl(tmp_path, proxy.url, f"{base}/reset")
        assert broken.code != 0  # curl reports the transfer as failed (18: partial file)
        assert len(broken.body) < 100_000
        await curl(tmp_path, proxy.url, f"{base}/reset")
        assert len(origin.requests("/reset")) == 2
        assert proxy.store.object_count == 0
        assert await proxy.logged(2) == ["TCP_MISS_ABORTED/200"] * 2
        nursery.cancel_scope.cancel()


async def test_connect_tunnel_to_a_tls_origin(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    import ssl

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    origin = Origin()
    origin.route("/secret", Reply(200, [("Content-Type", "text/plain")], b"over TLS"))
    async with trio.open_nursery() as nursery:
        tls_port = await serve_origin(nursery, origin, server_context)
        async with real_proxy(tmp_path, ProxyConfig(connect_ports=(tls_port,))) as proxy:
            result = await curl(
                tmp_path, proxy.url, f"https://localhost:{tls_port}/secret", "--cacert", str(ca_file)
            )
            assert (result.code, result.body) == (0, b"over TLS"), result.stderr
            tags = await proxy.logged(1)
            assert tags == ["TCP_TUNNEL/200"]
            assert proxy.log.lines[0].split()[6] == f"localhost:{tls_port}"
            refused = await curl(tmp_path, proxy.url, "https://localhost:1/", "--cacert", str(ca_file))
            assert refused.code != 0
            assert await proxy.logged(2) == ["TCP_TUNNEL/200", "TCP_DENIED/403"]
        nursery.cancel_scope.cancel()
