"""``netlab mail``, ``netlab smtpd`` and ``netlab pop3d`` as commands (servers in subprocesses)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from netlab.cli import main
from netlab.config import NetlabConfig
from netlab.store.mail_queue import MailQueue
from netlab.store.users import UserDb
from servers import pop3, smtp
from tests.mailtest import CHEAP, PASSWORD, ServerProcess, maildir_files, netlab_process, write_config

pytestmark = pytest.mark.timeout(120)


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_adduser_and_passwd_read_the_password_from_stdin(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert (
        invoke("mail", "adduser", "Carol@Example.test", "--store", store, stdin="first\n")
        == "added Carol@Example.test\n"
    )
    invoke("mail", "passwd", "carol@example.test", "--store", store, stdin="second\n")
    users = UserDb(tmp_path / "store" / "users")
    assert users.verify("carol@example.test", "second") is not None
    assert users.verify("carol@example.test", "first") is None
    again = CliRunner().invoke(main, ["mail", "adduser", "carol@example.test", "--store", store], input="x\n")
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_queue_listing(tmp_path: Path) -> None:
    assert invoke("mail", "queue", "--store", str(tmp_path)) == "queue is empty\n"
    q = MailQueue(tmp_path / "queue")
    entry = q.add("a@x.test", ["b@y.test"], b"m\n", now=0.0)
    entry.last_error = "451 Cannot talk to mx.y.test"
    q.save(entry)
    out = invoke("mail", "queue", "--store", str(tmp_path))
    assert f"{entry.id}  age " in out
    assert "from <a@x.test>" in out
    assert "    to <b@y.test>" in out
    assert "    last error: 451 Cannot talk to mx.y.test" in out


def test_commands_have_help() -> None:
    assert "--domain" in invoke("smtpd", "--help")
    assert "--apop" in invoke("pop3d", "--help")
    for sub in ("send", "fetch", "adduser", "passwd", "queue"):
        assert sub in invoke("mail", "--help")


def test_services_for_netlab_up_follow_enabled() -> None:
    config = NetlabConfig()
    assert smtp.service(config) is not None
    assert pop3.service(config) is not None
    off = dataclasses.replace(
        config,
        smtp=dataclasses.replace(config.smtp, enabled=False),
        pop3=dataclasses.replace(config.pop3, enabled=False),
    )
    assert smtp.service(off) is None
    assert pop3.service(off) is None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess, Path]]:
    store = tmp_path / "store"
    UserDb(store / "users", hasher=CHEAP).set_password("alice@example.test", PASSWORD, create=True)
    cfg = write_config(tmp_path / "netlab.toml", store, general={"grace_period": 1.0})
    log = tmp_path / "servers.log"
    with (
        netlab_process(["smtpd", "--config", str(cfg)], "smtp", log) as smtpd,
        netlab_process(["pop3d", "--config", str(cfg)], "pop3", log) as pop3d,
    ):
        yield smtpd, pop3d, store


def test_send_then_fetch_over_tls(servers: tuple[ServerProcess, ServerProcess, Path], tmp_path: Path) -> None:
    smtpd, pop3d, store = servers
    env = {"NETLAB_MAIL_PASSWORD": PASSWORD}
    out = invoke(
        "mail", "send", "--server", f"127.0.0.1:{smtpd.port}", "--tls", "--auth", "alice@example.test",
        "--from", "alice@example.test", "--to", "alice@example.test", "--subject", "note to self",
        stdin="remember the milk\n.\nreally\n", env=env,
    )  # fmt: skip
    assert out.startswith("<alice@example.test>: 250 2.0.0 Ok: queued as ")
    (stored,) = maildir_files(store, "alice@example.test")
    assert b"with ESMTPSA" in stored.read_bytes()
    listing = invoke(
        "mail",
        "fetch",
        "--server",
        f"127.0.0.1:{pop3d.port}",
        "--tls",
        "--user",
        "alice@example.test",
        env=env,
    )
    assert listing.endswith("1 message(s)\n")
    out_dir = tmp_path / "inbox"
    invoke(
        "mail", "fetch", "--server", f"127.0.0.1:{pop3d.port}", "--tls", "--user", "alice@example.test",
        "--out", str(out_dir), "--delete", env=env,
    )  # fmt: skip
    (saved,) = out_dir.iterdir()
    text = saved.read_bytes()
    assert b"Subject: note to self\n" in text
    assert text.endswith(b"remember the milk\n.\nreally\n")
    assert maildir_files(store, "alice@example.test") == []


def test_send_refused_recipient_fails(servers: tuple[ServerProcess, ServerProcess, Path]) -> None:
    smtpd, _, _ = servers
    result = CliRunner().invoke(
        main,
        [
            "mail",
            "send",
            "--server",
            f"127.0.0.1:{smtpd.port}",
            "--from",
            "x@y.test",
            "--to",
            "nobody@example.test",
        ],
        input="hi\n",
    )
    assert result.exit_code != 0
    assert "<nobody@example.test>: 550 5.1.1" in result.output
