"""The self-signed certificate servers make on first run."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

from cryptography import x509

from netlab.aio.tls import ensure_self_signed, server_context


def test_made_once_kept_and_usable(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "tls", "mx.test")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mx.test", "localhost"]
    assert isinstance(server_context(cert, key), ssl.SSLContext)
    before = cert.read_bytes()
    assert ensure_self_signed(tmp_path / "tls", "other.test") == (cert, key)
    assert cert.read_bytes() == before


def test_two_servers_starting_together_agree_on_one_pair(tmp_path: Path) -> None:
    results: list[tuple[Path, Path]] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_self_signed(tmp_path / "tls", "mx.test")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4
    cert, key = results[0]
    server_context(cert, key)  # the key matches the certificate
