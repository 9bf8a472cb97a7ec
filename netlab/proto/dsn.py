"""Delivery status notifications ("bounces"), RFC 3464 inside an RFC 6522 multipart/report.

Strategy: :func:`bounce_message` builds the whole message, CRLF line ends, from what the relay
knows: the original envelope sender and headers, and one :class:`RecipientStatus` per failed
recipient.  The three parts are the ones RFC 6522 section 3 lays out: a human-readable
explanation, the machine-readable ``message/delivery-status`` (per-message fields, then one block
per recipient, RFC 3464 section 2), and the original headers only (``text/rfc822-headers``), so a
bounce never carries the original body back; when the report or those headers hold UTF-8 (an
internationalized address or header field), the parts have the "global" types of RFC 6533.  It
is sent from the null reverse-path, and marked ``Auto-Submitted`` (RFC 3834), so nothing ever
answers it with another bounce.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime

__all__ = ["RecipientStatus", "bounce_message"]


@dataclass(frozen=True)
class RecipientStatus:
    """Why one recipient could not be reached."""

    recipient: str
    status: str  # an RFC 3463 code such as "5.1.1" or "4.4.7"
    diagnostic: str  # the remote reply ("550 5.1.1 User unknown") or our reason
    remote_mta: str | None = None


def bounce_message(
    *,
    reporting_mta: str,
    sender: str,
    original_headers: bytes,
    failures: list[RecipientStatus],
    arrival: datetime,
    now: datetime,
    message_id: str,
) -> bytes:
    """The complete DSN message (headers and body) to send to ``sender``."""
    boundary = f"{message_id}/{reporting_mta}"
    stamp = email.utils.format_datetime(now)
    human = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "",
        *(f"<{f.recipient}>: {f.diagnostic}" for f in failures),
    ]
    status = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"Arrival-Date: {email.utils.format_datetime(arrival)}",
    ]
    for f in failures:
        # RFC 6533 section 3: an internationalized address has its own address type.
        address_type = "rfc822" if f.recipient.isascii() else "utf-8"
        status += [
            "",
            f"Final-Recipient: {address_type}; {f.recipient}",
            "Action: failed",
            f"Status: {f.status}",
        ]
        if f.remote_mta:
            status.append(f"Remote-MTA: dns; {f.remote_mta}")
        kind = "smtp" if f.diagnostic[:3].isdigit() else "x-netlab"
        status += [f"Diagnostic-Code: {kind}; {f.diagnostic}", f"Last-Attempt-Date: {stamp}"]
    headers = original_headers.rstrip(b"\r\n") + b"\r\n"
    # RFC 6533 section 6: UTF-8 in the report or in the returned headers calls for the "global"
    # media types, which may carry it.
    utf8_status = not all(f.recipient.isascii() and f.diagnostic.isascii() for f in failures)
    status_type = "message/global-delivery-status" if utf8_status else "message/delivery-status"
    headers_type = "text/rfc822-headers" if headers.isascii() else "message/global-headers"
    parts = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {stamp}",
        f"Message-ID: <{message_id}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        *human,
        "",
        f"--{boundary}",
        f"Content-Type: {status_type}",
        "Content-Description: Delivery report",
        "",
        *status,
        "",
        f"--{boundary}",
        f"Content-Type: {headers_type}",
        "Content-Description: Undelivered message headers",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n"
    return ("\r\n".join(parts) + "\r\n").encode("utf-8") + headers + tail.encode()
