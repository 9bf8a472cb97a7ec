"""TLS for the servers that offer STARTTLS/STLS: certificates and ``ssl`` contexts.

Strategy: a server configured with a certificate and key uses them.  Otherwise it makes a
self-signed pair on its first run (an ECDSA P-256 key, names for its host name, ``localhost``,
127.0.0.1 and ::1) and keeps it in its data directory, so the certificate a client pinned stays
the same across restarts.  The pair is written key first, each file atomically, the key with mode
0600, under a lock so that two servers starting at once agree on one pair.  Clients in the lab
do not verify by default (every lab certificate is self-signed); a switch turns verification on
against the system's trust store or a given CA file.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["client_context", "ensure_self_signed", "server_context"]

log = logging.getLogger(__name__)

_VALIDITY = datetime.timedelta(days=825)  # the longest TLS clients accept for a leaf


def ensure_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """``(cert, key)`` under ``directory``, made now if they are missing (blocking)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Two servers starting together (smtpd and pop3d) must not each write half a pair.
    lock = os.open(directory / "make.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            _make_pair(cert_path, key_path, hostname)
    finally:
        os.close(lock)
    return cert_path, key_path


def _make_pair(cert_path: Path, key_path: Path, hostname: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys([hostname, "localhost"])]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("made a self-signed certificate for %s in %s", hostname, cert_path.parent)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with the library's secure defaults (TLS 1.2 and later)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(*, verify: bool, cafile: str | None = None) -> ssl.SSLContext:
    """A client context; ``verify=False`` accepts any certificate (lab servers are self-signed)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
