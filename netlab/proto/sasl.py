"""SASL PLAIN and LOGIN exchanges, shared by SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034).

Strategy: a :class:`SaslServer` is a two-step machine over already-framed lines.  It yields a
:class:`Challenge` (the protocol sends it as "334 b64" or "+ b64") until it has the credentials,
then :class:`Credentials`, which the driver checks against the user store.  Base64 framing,
the "*" cancel (RFC 4954 section 4, RFC 5034 section 4) and the "=" empty initial response live
here once for both protocols.

PLAIN is RFC 4616: ``authzid NUL authcid NUL passwd``.  LOGIN has no RFC (an expired draft) but
every client speaks it: the server asks "Username:" then "Password:".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

__all__ = ["MECHANISMS", "Challenge", "Credentials", "SaslError", "SaslServer", "plain_response"]

MECHANISMS = ("PLAIN", "LOGIN")


@dataclass(frozen=True)
class Challenge:
    data: bytes

    def encoded(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    authzid: str = ""


class SaslError(Exception):
    """The exchange failed before credentials could be checked.

    ``reason`` is "mechanism" (not supported), "cancelled" (the client sent "*") or "malformed".
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def _decode(line: str) -> bytes:
    if line == "*":
        raise SaslError("cancelled", "Authentication cancelled")
    if line == "=":
        return b""
    try:
        return base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslError("malformed", "Invalid base64 data") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("malformed", "Credentials are not UTF-8") from None


class SaslServer:
    """The server side of one PLAIN or LOGIN exchange.

    Raises:
        SaslError: ``mechanism`` is not supported.
    """

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism.upper()
        if self.mechanism not in MECHANISMS:
            raise SaslError("mechanism", f"Mechanism {mechanism[:20]} not supported")
        self._username: str | None = None

    def start(self, initial: str | None) -> Challenge | Credentials:
        """Begin with the optional initial response that came with the AUTH command."""
        if initial is None:
            return Challenge(b"") if self.mechanism == "PLAIN" else Challenge(b"Username:")
        return self.respond(initial)

    def respond(self, line: str) -> Challenge | Credentials:
        """The client's answer to the last challenge.

        Raises:
            SaslError: "*" (cancelled) or undecodable data.
        """
        data = _decode(line.strip())
        if self.mechanism == "PLAIN":
            parts = data.split(b"\0")
            if len(parts) != 3 or not parts[1]:
                raise SaslError("malformed", "PLAIN wants authzid NUL authcid NUL passwd")
            authzid, username, password = (_text(p) for p in parts)
            return Credentials(username, password, authzid)
        if self._username is None:
            self._username = _text(data)
            return Challenge(b"Password:")
        return Credentials(self._username, _text(data))


def plain_response(username: str, password: str) -> str:
    """The base64 PLAIN response a client sends (no authorization identity)."""
    return base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode("ascii")
