"""Trace headers an SMTP server adds to every message it accepts.

RFC 5321 section 4.4: the receiving server prepends a ``Received:`` line recording who handed the
message over (the HELO name and the connecting address), who took it, how (the "with" protocol
name of RFC 3848 / RFC 6531: ESMTP, plus S for TLS and A for authentication) and when.  The "for"
clause names the recipient only when there is exactly one, so a message to many does not list
them all in every copy.
"""

from __future__ import annotations

__all__ = ["received_header", "with_protocol"]


def with_protocol(*, extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The "with" keyword (RFC 3848 section 2, RFC 6531 section 3.7.3)."""
    if not extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(
    *,
    helo: str,
    peer_ip: str,
    by: str,
    protocol: str,
    queue_id: str,
    recipients: list[str],
    date: str,
) -> bytes:
    """The ``Received:`` field, folded, with its CRLF, ready to prepend.

    ``date`` is the time of receipt as an RFC 5322 date-time ("Wed, 01 May 2024 12:00:00 +0200"),
    which the caller formats from its clock.
    """
    literal = f"IPv6:{peer_ip}" if ":" in peer_ip else peer_ip
    lines = [
        f"Received: from {helo} ([{literal}])",
        f"\tby {by} (netlab) with {protocol} id {queue_id}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>;")
        lines.append(f"\t{date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
