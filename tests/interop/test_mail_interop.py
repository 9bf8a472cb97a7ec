"""The mail servers with the standard tools: swaks, mpop, fetchmail and nmap's smtp-open-relay."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netlab.store.users import UserDb
from tests.conftest import require_tool
from tests.mailtest import CHEAP, PASSWORD, maildir_files, netlab_process, write_config

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ALICE = "alice@example.test"


@dataclass
class Mail:
    smtp_port: int
    pop3_port: int
    store: Path
    tmp: Path


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[Mail]:
    store = tmp_path / "store"
    UserDb(store / "users", hasher=CHEAP).set_password(ALICE, PASSWORD, create=True)
    cfg = write_config(
        tmp_path / "netlab.toml",
        store,
        smtp={"max_message_size": 20_000, "hostname": "mx.example.test"},
        general={"grace_period": 1.0},
    )
    log = tmp_path / "servers.log"
    with (
        netlab_process(["smtpd", "--config", str(cfg)], "smtp", log) as smtpd,
        netlab_process(["pop3d", "--config", str(cfg)], "pop3", log) as pop3d,
    ):
        yield Mail(smtpd.port, pop3d.port, store, tmp_path)


def swaks(mail: Mail, *args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("swaks", "swaks")
    return subprocess.run(
        [tool, "--server", f"127.0.0.1:{mail.smtp_port}", "--from", "tester@far.test", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_swaks_plain(mail: Mail) -> None:
    done = swaks(mail, "--to", ALICE, "--header", "Subject: plain")
    assert done.returncode == 0, done.stdout
    assert "<-  250 2.0.0 Ok: queued as " in done.stdout
    (path,) = maildir_files(mail.store, ALICE)
    assert b"Subject: plain" in path.read_bytes()


def test_swaks_pipelining(mail: Mail) -> None:
    done = swaks(mail, "--pipeline", "--to", ALICE, "--header", "Subject: pipelined")
    assert done.returncode == 0, done.stdout
    assert "PIPELINING" in done.stdout
    # swaks sends MAIL, RCPT and DATA in one go, then reads the three replies.
    assert " -> MAIL FROM:<tester@far.test>\n -> RCPT TO:<alice@example.test>\n -> DATA\n" in done.stdout
    assert len(maildir_files(mail.store, ALICE)) == 1


def test_swaks_starttls_and_auth_may_relay(mail: Mail) -> None:
    done = swaks(
        mail, "--tls", "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD,
        "--to", "friend@far.test", "--from", ALICE,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "<~  235 2.7.0 Authentication successful" in done.stdout
    assert "<~  250 2.0.0 Ok: queued as " in done.stdout
    queue = [p.name for p in (mail.store / "queue").glob("*.json")]
    assert len(queue) == 1


def test_swaks_auth_without_tls_is_refused(mail: Mail) -> None:
    done = swaks(mail, "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD, "--to", ALICE)
    assert done.returncode != 0
    assert "AUTH" not in done.stdout.split("<-  250 ", 1)[1].split("\n -> ", 1)[0]


def test_swaks_8bit_body_arrives_unchanged(mail: Mail) -> None:
    body = "Grüße aus Köln, ünïcödé ✓\n"
    done = swaks(mail, "--to", ALICE, "--header", "Subject: 8bit", "--body", body, "--ehlo", "client.test")
    assert done.returncode == 0, done.stdout
    assert "<~  250-8BITMIME" in done.stdout or "<-  250-8BITMIME" in done.stdout
    (path,) = maildir_files(mail.store, ALICE)
    assert body.encode() in path.read_bytes()


def test_swaks_size_limit(mail: Mail) -> None:
    done = swaks(mail, "--to", ALICE, "--body", "x" * 30_000)
    assert "250-SIZE 20000" in done.stdout
    assert "552 5.3.4 Message size exceeds fixed maximum message size" in done.stdout
    assert done.returncode != 0
    assert maildir_files(mail.store, ALICE) == []


def test_swaks_from_another_address_cannot_relay(mail: Mail) -> None:
    done = swaks(mail, "--local-interface", "127.0.0.2", "--to", "victim@far.test")
    assert done.returncode != 0
    assert "550 5.7.1 <victim@far.test>: Relay access denied" in done.stdout


def _deliver(mail: Mail, count: int) -> None:
    box = mail.store / "mailboxes" / "example.test" / "alice"
    for n in range(count):
        done = swaks(mail, "--to", ALICE, "--header", f"Subject: fetch me {n}", "--body", f".dot\nbody {n}\n")
        assert done.returncode == 0, done.stdout
    assert len(list((box / "new").iterdir())) == count


def test_mpop_retrieves_over_stls(mail: Mail) -> None:
    tool = require_tool("mpop", "mpop")
    _deliver(mail, 3)
    out = mail.tmp / "mpop-maildir"
    for d in ("tmp", "new", "cur"):
        (out / d).mkdir(parents=True)
    rc = mail.tmp / "mpoprc"
    rc.write_text(
        "defaults\n"
        "tls on\ntls_starttls on\ntls_certcheck off\n"
        "account lab\n"
        f"host 127.0.0.1\nport {mail.pop3_port}\nuser {ALICE}\npassword {PASSWORD}\nauth user\n"
        f"delivery maildir {out}\nuidls_file {mail.tmp / 'mpop-uidls'}\nkeep off\n"
    )
    rc.chmod(0o600)
    done = subprocess.run([tool, "-C", str(rc), "-q", "lab"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fetched = sorted(p.read_bytes() for p in (out / "new").iterdir())
    assert len(fetched) == 3
    assert all(b"\n.dot\n" in f for f in fetched)  # unstuffed again on the way out
    assert maildir_files(mail.store, ALICE) == []  # keep off: deleted at QUIT


def test_fetchmail_retrieves_and_keeps(mail: Mail) -> None:
    tool = require_tool("fetchmail", "fetchmail")
    _deliver(mail, 2)
    sink = mail.tmp / "fetched.mbox"
    rc = mail.tmp / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {mail.pop3_port} protocol pop3 uidl\n"
        f'  user "{ALICE}" password "{PASSWORD}" sslproto "TLS1.2+" no sslcertck keep\n'
        f"  mda \"/bin/sh -c 'cat >> {sink}'\"\n"
    )
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(mail.tmp), "FETCHMAILHOME": str(mail.tmp)}
    done = subprocess.run(
        [tool, "-f", str(rc), "--nodetach", "--nosyslog", "-v"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = sink.read_text()
    assert "Subject: fetch me 0" in text
    assert "Subject: fetch me 1" in text
    assert len(maildir_files(mail.store, ALICE)) == 2  # keep


def test_nmap_smtp_open_relay_reports_closed(mail: Mail) -> None:
    tool = require_tool("nmap", "nmap")
    done = subprocess.run(
        [
            tool, "-n", "-Pn", "-p", str(mail.smtp_port), "--script", "+smtp-open-relay",
            "--script-args", "smtp-open-relay.domain=example.test",
            "-S", "127.0.0.2", "-e", "lo", "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Server doesn't seem to be an open relay, all tests failed" in done.stdout
    assert list((mail.store / "queue").glob("*.json")) == []
