"""A POP3 session's view of its maildrop: message numbers, sizes, UIDs and deletion marks.

Strategy: RFC 1939 section 5 numbers the messages of a maildrop from 1 when the session enters
the TRANSACTION state, and the numbers never change during the session; DELE only marks a
message, RSET unmarks them all, and only the UPDATE state (after QUIT) removes the marked ones.
:class:`MaildropView` keeps exactly that, without touching storage: it answers STAT, LIST, UIDL,
DELE and RSET with the events to send, and hands the driver what to read for RETR and TOP and
what to delete at the end.  Sizes are in octets with CRLF line ends, as on the wire.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netlab.proto.pop3_events import Err, Ok

__all__ = ["MaildropView", "MessageInfo", "apop_digest", "top_of"]


@dataclass(frozen=True)
class MessageInfo:
    """One message: its unique id (UIDL), size in CRLF octets, and the store's key for it."""

    uid: str
    size: int
    key: str


class MaildropView:
    def __init__(self, messages: Sequence[MessageInfo]) -> None:
        self._messages = list(messages)
        self._deleted: set[int] = set()

    def _get(self, which: int) -> MessageInfo | Err:
        if not 1 <= which <= len(self._messages):
            return Err(f"No such message: {which}")
        if which in self._deleted:
            return Err(f"Message {which} already deleted")
        return self._messages[which - 1]

    def _live(self) -> list[tuple[int, MessageInfo]]:
        return [(n, m) for n, m in enumerate(self._messages, 1) if n not in self._deleted]

    def stat(self) -> Ok:
        live = self._live()
        # RFC 1939 section 5: "+OK nn mm", deleted messages not counted.
        return Ok(f"{len(live)} {sum(m.size for _, m in live)}")

    def sizes(self, which: int | None) -> Ok | Err:
        """LIST."""
        return self._listing(which, lambda m: str(m.size))

    def uids(self, which: int | None) -> Ok | Err:
        """UIDL."""
        return self._listing(which, lambda m: m.uid)

    def _listing(self, which: int | None, field: Callable[[MessageInfo], str]) -> Ok | Err:
        if which is not None:
            found = self._get(which)
            return found if isinstance(found, Err) else Ok(f"{which} {field(found)}")
        live = self._live()
        body = "".join(f"{n} {field(m)}\r\n" for n, m in live).encode()
        return Ok(f"{len(live)} messages", body)

    def message(self, which: int) -> MessageInfo | Err:
        """The message RETR or TOP should read, or the -ERR to send instead."""
        return self._get(which)

    def dele(self, which: int) -> Ok | Err:
        found = self._get(which)
        if isinstance(found, Err):
            return found
        self._deleted.add(which)
        return Ok(f"Message {which} deleted")

    def rset(self) -> Ok:
        self._deleted.clear()
        return self.stat()

    def deleted(self) -> list[MessageInfo]:
        """What the UPDATE state removes."""
        return [self._messages[n - 1] for n in sorted(self._deleted)]


def top_of(content: bytes, lines: int) -> bytes:
    """The header, the blank line and the first ``lines`` lines of the body (RFC 1939 TOP).

    ``content`` and the result have CRLF line ends.
    """
    head, sep, body = content.partition(b"\r\n\r\n")
    if not sep:
        return content
    if lines == 0:
        return head + b"\r\n\r\n"
    kept = body.split(b"\r\n")[:lines]
    # A body whose last line ends in CRLF splits into a trailing empty piece; drop it.
    text = b"\r\n".join(kept)
    return head + b"\r\n\r\n" + text + (b"\r\n" if text and not text.endswith(b"\r\n") else b"")


def apop_digest(timestamp: str, secret: str) -> str:
    """MD5 of the greeting's timestamp and the shared secret, in lower-case hex (RFC 1939 7)."""
    return hashlib.md5((timestamp + secret).encode("utf-8"), usedforsecurity=False).hexdigest()
