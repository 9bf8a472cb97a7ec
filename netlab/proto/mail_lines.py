"""Line framing shared by the mail protocols: CRLF lines, dot-terminated blocks, dot-stuffing.

SMTP (RFC 5321 section 2.3.8) and POP3 (RFC 1939 section 3) are both line protocols whose
multi-line payloads end with a line holding a single ".", with a leading "." on any other line
doubled by the sender ("dot-stuffing", RFC 5321 section 4.5.2).

Strategy: a :class:`ReceiveBuffer` holds the peer's bytes and hands out either the next command
line (:meth:`ReceiveBuffer.next_line`) or the next dot-terminated block
(:meth:`ReceiveBuffer.next_block`), whichever the machine's state calls for.  Both scan from where
the last scan stopped, so a message that arrives in many small reads costs linear time, and both
bound memory: an over-long line is skipped to its end and reported once as :data:`TOO_LONG`; a
block past its limit is discarded while the scan goes on looking for its end, and reported as a
:class:`Block` with ``overflow`` set.  Blocks are unstuffed with two C-level ``replace`` calls
rather than line by line, which is what makes DATA fast.

Command lines end at LF, with an optional CR before it, because people type commands with tools
that send bare LF.  A block ends only at CRLF "." CRLF: accepting any other end of data is what
made "SMTP smuggling" possible (a second message hidden inside the first, 2023).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "NEED_DATA",
    "TOO_LONG",
    "Block",
    "NeedData",
    "ReceiveBuffer",
    "TooLong",
    "dot_stuff",
    "to_crlf",
    "to_lf",
]

_END_OF_BLOCK = b"\r\n.\r\n"


class NeedData(enum.Enum):
    """The marker type of :data:`NEED_DATA`."""

    NEED_DATA = "need data"


#: What every mail machine's ``next_event`` returns when it needs more bytes (as h11 does).
NEED_DATA = NeedData.NEED_DATA


class TooLong(enum.Enum):
    """The marker type of :data:`TOO_LONG`."""

    TOO_LONG = "too long"


#: What :meth:`ReceiveBuffer.next_line` returns for a line that was over the limit (and skipped).
TOO_LONG = TooLong.TOO_LONG


@dataclass(frozen=True)
class Block:
    """A dot-terminated block, unstuffed, lines ending in CRLF, the final "." line removed.

    ``overflow`` means the block was longer than allowed: ``content`` is then empty (the bytes
    were discarded as they came) and ``size`` counts what was received, stuffing included.
    """

    content: bytes
    size: int
    overflow: bool = False


class ReceiveBuffer:
    """The bytes received from the peer and not yet consumed."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._scanned = 0  # bytes at the front already known not to hold a line end / block end
        self._skipping = False  # inside an over-long line, discarding up to its LF
        self._discarded = 0  # bytes of the current block dropped because it overflowed

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes | bytearray) -> None:
        self._data += data

    def clear(self) -> None:
        """Forget everything buffered (after STARTTLS: RFC 3207 section 4.2 forbids using it)."""
        self._data.clear()
        self._scanned = 0
        self._skipping = False
        self._discarded = 0

    def next_line(self, max_length: int) -> bytes | TooLong | None:
        """The next line without its line end, :data:`TOO_LONG`, or None if none is complete.

        Args:
            max_length: the longest line allowed, counting its CRLF.
        """
        end = self._data.find(b"\n", self._scanned)
        if end < 0:
            if len(self._data) > max_length:
                # Keep nothing of a line we are going to refuse anyway (memory stays bounded).
                self._skipping = True
                self._data.clear()
            self._scanned = len(self._data)
            return None
        line = bytes(self._data[:end])
        del self._data[: end + 1]
        self._scanned = 0
        if self._skipping or end + 1 > max_length:
            self._skipping = False
            return TOO_LONG
        return line[:-1] if line.endswith(b"\r") else line

    def next_block(self, max_size: int) -> Block | None:
        """The next dot-terminated block, or None if its end has not arrived yet.

        Call it only at the start of a block (after the line that announced it), as the
        terminator is recognised as CRLF "." CRLF or, for an empty block, "." CRLF at the start.

        Args:
            max_size: the most bytes (stuffed, as received) to keep; more is discarded.
        """
        if self._discarded == 0 and self._data.startswith(b".\r\n"):
            del self._data[:3]
            self._scanned = 0
            return Block(b"", 0)
        end = self._data.find(_END_OF_BLOCK, max(0, self._scanned - 4))
        if end < 0:
            if self._discarded + len(self._data) > max_size:
                # Keep the last 4 bytes: the terminator may straddle this read and the next.
                keep = self._data[-4:]
                self._discarded += len(self._data) - len(keep)
                self._data = bytearray(keep)
            self._scanned = len(self._data)
            return None
        raw = bytes(self._data[: end + 2])
        del self._data[: end + len(_END_OF_BLOCK)]
        self._scanned = 0
        size = self._discarded + len(raw)
        if self._discarded or size > max_size:
            self._discarded = 0
            return Block(b"", size, overflow=True)
        # RFC 5321 section 4.5.2: a line that starts with "." loses that first ".".
        content = (b"\r\n" + raw).replace(b"\r\n.", b"\r\n")[2:]
        return Block(content, size)

    def take(self) -> bytes:
        """Everything buffered, removed from the buffer."""
        data = bytes(self._data)
        self.clear()
        return data


def dot_stuff(content: bytes) -> bytes:
    """``content`` (CRLF lines) as a dot-terminated block, ready to send (RFC 5321 4.5.2)."""
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"


def to_crlf(content: bytes) -> bytes:
    """Stored line ends (LF, or CRLF in files other programs wrote) to CRLF for the wire."""
    if b"\r\n" in content:
        content = content.replace(b"\r\n", b"\n")
    return content.replace(b"\n", b"\r\n")


def to_lf(content: bytes) -> bytes:
    """CRLF line ends (as received) to LF (as stored in a Maildir)."""
    return content.replace(b"\r\n", b"\n")
