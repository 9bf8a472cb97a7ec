"""The file-transfer application protocol spoken over one reliable-transport connection.

The transport delivers a byte stream; the receiver also needs the file's name and size, and the
sender needs to know that the file was *stored*, not merely received.  So a transfer is:

.. code-block:: text

    sender   -> receiver:  NETLAB-RDT/1 SEND <size> <name>\\n  <exactly size bytes>  EOF
    receiver -> sender:    OK <size> <sha256-hex> <stored-name>\\n  EOF
                      or:  ERR <reason>\\n  EOF

``<size>`` is decimal; ``<name>`` and ``<stored-name>`` are percent-encoded UTF-8 (RFC 3986
section 2.1, every byte but the unreserved ones), so a line never holds a space or a newline.
The receiver answers ``OK`` only after the file is fsynced and renamed into place: a transport
acknowledgment says the bytes arrived, only the ``OK`` says they are durably stored.  The SHA-256
lets the sender check the stored bytes end to end.  Lines are at most :data:`MAX_LINE` bytes.

:class:`FileReceiver` is a stream machine in the h11 shape (``receive_data`` with ``b""`` for
EOF, ``next_event`` returning :data:`NEED_DATA` when it wants more).  It raises
:class:`RemoteProtocolError` carrying the ``ERR`` line to send back when the sender misbehaves.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = [
    "MAX_LINE",
    "NEED_DATA",
    "FileData",
    "FileEnd",
    "FileHeader",
    "FileReceiver",
    "RemoteProtocolError",
    "Reply",
    "encode_error",
    "encode_ok",
    "encode_request",
    "parse_reply",
    "sanitize_name",
]

MAGIC = b"NETLAB-RDT/1"
MAX_LINE = 4096  # bytes, newline included
MAX_NAME = 200  # bytes of UTF-8 in a stored file name (ext4 allows 255)


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _NeedData.NEED_DATA


class RemoteProtocolError(Exception):
    """The sender broke the protocol; ``reply`` is the ``ERR`` line to send it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reply = encode_error(reason)


@dataclass(frozen=True)
class FileHeader:
    size: int
    name: str  # as the sender wrote it, decoded but not yet sanitised


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    """Exactly ``size`` bytes arrived, followed by the sender's EOF."""


Event = FileHeader | FileData | FileEnd


@dataclass(frozen=True)
class Reply:
    ok: bool
    size: int = 0
    sha256: str = ""
    name: str = ""
    reason: str = ""


def _quote(name: str) -> str:
    return quote(name, safe="")


def encode_request(size: int, name: str) -> bytes:
    """The sender's header line."""
    return b"%s SEND %d %s\n" % (MAGIC, size, _quote(name).encode("ascii"))


def encode_ok(size: int, sha256: str, stored_name: str) -> bytes:
    return f"OK {size} {sha256} {_quote(stored_name)}\n".encode("ascii")


def encode_error(reason: str) -> bytes:
    # One line whatever the reason says.
    flat = " ".join(reason.split())
    return f"ERR {flat}\n".encode("utf-8", "replace")[: MAX_LINE - 1].rstrip(b"\n") + b"\n"


_REQUEST = re.compile(rb"^NETLAB-RDT/1 SEND (0|[1-9][0-9]{0,18}) ([A-Za-z0-9%._~-]{1,1000})\n$")
_OK = re.compile(r"^OK (0|[1-9][0-9]{0,18}) ([0-9a-f]{64}) ([A-Za-z0-9%._~-]{1,1000})$")


def parse_reply(line: bytes) -> Reply:
    """Read the receiver's answer (the line without or with its newline).

    Raises:
        ValueError: it is neither a well-formed ``OK`` nor an ``ERR`` line.
    """
    text = line.decode("utf-8", "replace").rstrip("\n")
    if text.startswith("ERR"):
        return Reply(ok=False, reason=text[3:].strip() or "unspecified error")
    match = _OK.match(text)
    if match is None:
        raise ValueError(f"malformed reply {text[:80]!r}")
    return Reply(ok=True, size=int(match[1]), sha256=match[2], name=unquote(match[3], errors="replace"))


def sanitize_name(raw: str) -> str:
    """A safe single file name from whatever the sender wrote.

    Keeps only the last path component (either separator), drops control characters, and strips
    leading dots (no hidden files, no ``.``/``..``) and surrounding blanks; never empty.
    """
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".").strip()
    encoded = name.encode("utf-8")[:MAX_NAME]
    name = encoded.decode("utf-8", "ignore")
    return name or "unnamed"


class FileReceiver:
    """Parses one incoming transfer: the header line, the bytes, the EOF.

    Args:
        max_size: the largest file accepted; a bigger announced size is refused at once.
    """

    def __init__(self, *, max_size: int) -> None:
        self._max_size = max_size
        self._buffer = bytearray()
        self._header: FileHeader | None = None
        self._remaining = 0
        self._eof = False
        self._done = False

    @property
    def header(self) -> FileHeader | None:
        return self._header

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the stream; ``b""`` is the sender's EOF."""
        if not data:
            self._eof = True
        else:
            self._buffer += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: a bad header, a size over the limit, more bytes than announced,
                or EOF before the last byte.
        """
        if self._done:
            return NEED_DATA
        if self._header is None:
            return self._next_header()
        if self._remaining and self._buffer:
            chunk = bytes(self._buffer[: self._remaining])
            del self._buffer[: len(chunk)]
            self._remaining -= len(chunk)
            return FileData(chunk)
        if self._buffer:
            raise RemoteProtocolError(f"more than the announced {self._header.size} bytes")
        if self._eof:
            if self._remaining:
                raise RemoteProtocolError(f"EOF with {self._remaining} of {self._header.size} bytes missing")
            self._done = True
            return FileEnd()
        return NEED_DATA

    def _next_header(self) -> FileHeader | _NeedData:
        end = self._buffer.find(b"\n", 0, MAX_LINE)
        if end < 0:
            if len(self._buffer) >= MAX_LINE:
                raise RemoteProtocolError("header line too long")
            if self._eof:
                raise RemoteProtocolError("EOF before the header line")
            return NEED_DATA
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        match = _REQUEST.match(line)
        if match is None:
            raise RemoteProtocolError("malformed header line")
        size = int(match[1])
        if size > self._max_size:
            raise RemoteProtocolError(f"file of {size} bytes is over the limit of {self._max_size}")
        self._header = FileHeader(size, unquote(match[2].decode("ascii"), errors="replace"))
        self._remaining = size
        return self._header
