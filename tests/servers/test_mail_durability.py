"""Crash durability: SIGKILL the SMTP server in the middle of a stream of messages.

Four smtplib clients send 500 numbered messages to a ``netlab smtpd`` process.  Once 200 have
been accepted the server is killed with SIGKILL (by PID) and started again on the same port; the
clients carry on.  Every message that got its 250 must then be in the Maildir exactly once and
whole; a message whose 250 never came may be there at most once (the server may have stored it
just before dying), never in part.
"""

from __future__ import annotations

import hashlib
import smtplib
import threading
from pathlib import Path

import pytest

from netlab.store.users import UserDb
from tests.mailtest import CHEAP, PASSWORD, maildir_files, netlab_process, stop_process, write_config

TOTAL = 500
KILL_AFTER = 200
WORKERS = 4


def message(n: int) -> bytes:
    body = b"".join(hashlib.sha256(f"{n}:{i}".encode()).hexdigest().encode() + b"\r\n" for i in range(40))
    return f"Subject: message {n}\r\nMessage-ID: <{n}@durability.test>\r\n\r\n".encode() + body


class Sender:
    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)
        self.server_up = threading.Event()
        self.server_up.set()
        self.next = 0
        self.acked: set[int] = set()
        self.failed: set[int] = set()

    def take(self) -> int | None:
        with self.lock:
            if self.next >= TOTAL:
                return None
            self.next += 1
            return self.next - 1

    def worker(self) -> None:
        client: smtplib.SMTP | None = None
        while (n := self.take()) is not None:
            try:
                if client is None:
                    self.server_up.wait(timeout=60)
                    client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                client.sendmail("sender@far.test", ["alice@example.test"], message(n))
            except (OSError, smtplib.SMTPException):
                with self.lock:
                    self.failed.add(n)
                client = None
                continue
            with self.progress:
                self.acked.add(n)
                self.progress.notify_all()
        if client is not None:
            client.quit()


@pytest.mark.timeout(300)
def test_every_acknowledged_message_survives_sigkill(tmp_path: Path) -> None:
    store = tmp_path / "store"
    UserDb(store / "users", hasher=CHEAP).set_password("alice@example.test", PASSWORD, create=True)
    cfg = write_config(tmp_path / "netlab.toml", store)
    log = tmp_path / "smtpd.log"
    with netlab_process(["smtpd", "--config", str(cfg)], "smtp", log) as first:
        sender = Sender(first.port)
        threads = [threading.Thread(target=sender.worker) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        with sender.progress:
            assert sender.progress.wait_for(lambda: len(sender.acked) >= KILL_AFTER, timeout=120)
            sender.server_up.clear()
        first.proc.kill()  # SIGKILL, by PID
        first.proc.wait(timeout=10)
        stop_process(first.proc)
        acked_before_kill = len(sender.acked)
        listen = ["--listen", f"127.0.0.1:{first.port}"]
        with netlab_process(["smtpd", "--config", str(cfg), *listen], "smtp", log):
            sender.server_up.set()
            for t in threads:
                t.join(timeout=240)
                assert not t.is_alive()
    assert KILL_AFTER <= acked_before_kill < TOTAL
    assert len(sender.acked) + len(sender.failed) == TOTAL
    assert len(sender.acked) > acked_before_kill  # the restarted server took the rest
    found: dict[int, int] = {}
    for path in maildir_files(store, "alice@example.test"):
        stored = path.read_bytes()
        subject = stored.split(b"Subject: message ", 1)[1].split(b"\n", 1)[0]
        n = int(subject)
        # Whole: exactly the message that was sent, after our Received: header, in LF form.
        assert stored.endswith(message(n).replace(b"\r\n", b"\n")), n
        found[n] = found.get(n, 0) + 1
    assert all(found.get(n) == 1 for n in sender.acked), sorted(n for n in sender.acked if found.get(n) != 1)
    assert all(count == 1 for count in found.values())
    assert set(found) <= sender.acked | sender.failed
