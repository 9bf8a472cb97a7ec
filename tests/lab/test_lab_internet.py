"""``netlab up --lab`` as a whole: the web through the proxy, mail over MX, the resolver, for real.

The suite runs as a subprocess with its own data directory and every service of its own on a
free port; the lab's hosts are on their 127.0.0.x addresses.  Twice: on the well-known ports
(DNS 53, web 80, SMTP 25, POP3 110), which needs root, so it skips with the reason elsewhere
(and fails in CI); and with the lab on one free high port, which anyone can run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netlab.lab import MAIL_DOMAINS, SERVERS, WEB_ORIGIN
from netlab.store.maildir import MailStore
from tests.conftest import IN_CI, require_tool
from tests.processes import ROOT, netlab_command, read_line, running

NETLAB = netlab_command()
#: The lab's hosts on their well-known ports: what the root run needs free.
WELL_KNOWN = [
    *((s.address, 53, kind) for s in SERVERS for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)),
    (WEB_ORIGIN.address, 80, socket.SOCK_STREAM),
    *((h.address, 25, socket.SOCK_STREAM) for d in MAIL_DOMAINS for h in d.mx),
    *((d.mx[0].address, 110, socket.SOCK_STREAM) for d in MAIL_DOMAINS),
]


@dataclass(frozen=True)
class Suite:
    data: Path
    config: Path
    lab: dict[str, object]
    resolver_port: int
    proxy_port: int

    def password(self, address: str) -> str:
        for line in (self.data / "lab" / "mail" / "passwords").read_text().splitlines():
            name, _, password = line.partition(" ")
            if name == address:
                return password
        raise AssertionError(f"no demo password for {address}")


def _skip_unless_well_known_ports_are_free() -> None:
    for address, port, kind in WELL_KNOWN:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                reason = (
                    f"cannot bind {address}:{port} ({exc.strerror}): the lab on well-known ports needs root"
                )
                if IN_CI:
                    pytest.fail(reason)
                pytest.skip(reason)


def _port_after(lines: list[str], prefix: str) -> int:
    """The port of 127.0.0.1 in the first start-up line that begins with ``prefix``."""
    line = next(line for line in lines if line.startswith(prefix))
    found = re.search(r"127\.0\.0\.1:(\d+)", line)
    assert found, line
    return int(found.group(1))


@pytest.fixture(scope="module", params=[53, 0], ids=["well-known-ports", "one-high-port"])
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    lab_port: int = request.param
    if lab_port == 53:
        _skip_unless_well_known_ports_are_free()
    tmp = tmp_path_factory.mktemp("suite")
    config = tmp / "netlab.toml"
    tables = "".join(
        f'[{t}]\nlisten = "127.0.0.1:0"\n' for t in ("resolver", "dns", "rdt", "proxy", "smtp", "pop3")
    )
    config.write_text(f'[general]\ndata_dir = "{tmp}"\n[lab]\nport = {lab_port}\n{tables}')
    with running([*NETLAB, "up", "--lab", "--config", str(config)], stderr=tmp / "netlab.log") as proc:
        lines = [read_line(proc, timeout=60)]
        while not lines[-1].startswith("netlab: "):
            lines.append(read_line(proc, timeout=60))
        lab = json.loads((tmp / "lab" / "lab.json").read_text())
        if lab_port == 53:
            taken = "a port was taken between the check and the start"
            assert (lab["port"], lab["web_port"], lab["mail_port"], lab["pop3_port"]) == (53, 80, 25, 110), (
                taken
            )
        else:
            assert lab["port"] > 1024 and lab["web_port"] == lab["mail_port"] == lab["port"]
        yield Suite(
            tmp, config, lab, _port_after(lines, "resolver DNS resolver on "), _port_after(lines, "proxy    ")
        )
    assert proc.returncode == 0


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def _wait_for_log(suite: Suite, text: str) -> None:
    """Wait (bounded) until the suite's log has a line containing ``text``."""
    log = suite.data / "netlab.log"
    deadline = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.02)


def _curl(curl: str, suite: Suite, url: str) -> tuple[str, str]:
    proxy = f"http://127.0.0.1:{suite.proxy_port}"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = _run([curl, "-sS", "--max-time", "30", "-x", proxy, "-D", "-", url], env=env)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")  # text mode: CR LF read as LF
    assert head.startswith("HTTP/1.1 200"), head
    x_cache = [
        line.split(":", 1)[1].split()[0] for line in head.splitlines() if line.lower().startswith("x-cache:")
    ]
    return x_cache[0], body


@pytest.mark.interop
@pytest.mark.timeout(120)
def test_curl_fetches_the_lab_shop_through_the_proxy(suite: Suite) -> None:
    curl = require_tool("curl", "curl")
    port = suite.lab["web_port"]
    url = "http://www.shop.test/" if port == 80 else f"http://www.shop.test:{port}/"
    x_cache, body = _curl(curl, suite, url)
    assert x_cache == "MISS"
    assert "<title>The lab shop</title>" in body
    # The proxy logs a request once it is done with it, stored copy included.
    _wait_for_log(suite, f" GET {url} - HIER_DIRECT/")
    x_cache, again = _curl(curl, suite, url)
    assert (x_cache, again) == ("HIT", body)


@pytest.mark.timeout(120)
def test_mail_from_alpha_to_beta_goes_over_mx_and_can_be_fetched(suite: Suite) -> None:
    mx1 = MAIL_DOMAINS[0].mx[0]
    subject = f"lab test {time.monotonic_ns()}"
    send = [
        *NETLAB, "mail", "send", "--server", f"{mx1.address}:{suite.lab['mail_port']}",
        "--from", "alice@alpha.test", "--to", "bob@beta.test", "--subject", subject,
        "--auth", "alice@alpha.test",
    ]  # fmt: skip
    env = {**os.environ, "NETLAB_MAIL_PASSWORD": suite.password("alice@alpha.test")}
    done = _run(send, input="Hello Bob, over MX.\n", env=env)
    assert done.returncode == 0, done.stderr
    assert "<bob@beta.test>: 250" in done.stdout
    # Relayed by alpha's relay (MX lookup through the suite's resolver) to mail.beta.test.
    maildir = MailStore(suite.data / "lab" / "mail" / "beta.test").maildir("bob@beta.test")
    deadline = time.monotonic() + 30
    arrived: list[Path] = []
    while time.monotonic() < deadline:
        arrived = [p for p in maildir.new.glob("*") if subject.encode() in p.read_bytes()]
        if arrived:
            break
        time.sleep(0.05)
    assert arrived, (suite.data / "netlab.log").read_text()[-3000:]
    message = arrived[0].read_bytes()
    assert b"by mail.beta.test" in message and b"by mx1.alpha.test" in message
    beta = MAIL_DOMAINS[1].mx[0]
    fetch = [*NETLAB, "mail", "fetch", "--tls", "--server", f"{beta.address}:{suite.lab['pop3_port']}"]
    fetch += ["--user", "bob@beta.test", "--out", str(suite.data / "fetched")]
    done = _run(fetch, env={**os.environ, "NETLAB_MAIL_PASSWORD": suite.password("bob@beta.test")})
    assert done.returncode == 0, done.stderr
    assert any(subject.encode() in p.read_bytes() for p in (suite.data / "fetched").iterdir())


@pytest.mark.timeout(120)
def test_dig_asks_the_suites_resolver_for_a_name_three_delegations_down(suite: Suite) -> None:
    done = _run([*NETLAB, "dig", "www.eu.shop.test", f"@127.0.0.1:{suite.resolver_port}"])
    assert done.returncode == 0, done.stderr
    assert "status: NOERROR" in done.stdout
    answers = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "www.eu.shop.test. 300 IN A 127.0.0.80" in answers, done.stdout


def test_config_show_lab_shows_the_pointing_of_the_running_suite(suite: Suite) -> None:
    done = _run([*NETLAB, "config", "show", "--lab", "--config", str(suite.config)])
    assert done.returncode == 0, done.stderr
    resolver = f'resolver = "127.0.0.1:{suite.resolver_port}"'
    assert f"# [proxy] {resolver}" in done.stdout
    assert f"# [smtp] {resolver}" in done.stdout
    assert done.stdout.count(f"\n{resolver}\n") == 2  # the [proxy] and [smtp] tables themselves
