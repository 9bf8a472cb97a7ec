"""The TFTP packet codec: RFC 1350 packets plus the RFC 2347 option acknowledgment.

Strategy: every packet is a frozen dataclass, and there are exactly two ways across the edge:
:func:`encode` turns one into bytes, :func:`decode_packet_untrusted` turns a peer's datagram
into one or raises :class:`RemoteProtocolError` carrying the ERROR packet to answer with.  The
decoder never raises anything else on any input.  DATA packets are the hot path of every
transfer, so they also get :func:`encode_data` (one precompiled ``struct`` plus a memoryview
slice of the file buffer) and a decoder branch that does no more than split off the header.

Wire format (RFC 1350 section 5, RFC 2347 section 2), all integers big-endian::

    RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | [ opt1 | 0 | value1 | 0 ] ...
    DATA     | 03 | block# | 0..blksize octets
    ACK      | 04 | block#
    ERROR    | 05 | code | message | 0
    OACK     | 06 | opt1 | 0 | value1 | 0 | ...

Strings are NUL-terminated "netascii".  File names are really bytes on a Unix host, so they are
decoded as UTF-8 with ``surrogateescape`` and encoded back the same way: every name round-trips.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Ack",
    "Data",
    "Error",
    "ErrorCode",
    "LocalProtocolError",
    "Opcode",
    "OptionAck",
    "Packet",
    "RemoteProtocolError",
    "Request",
    "decode_packet_untrusted",
    "encode",
    "encode_ack",
    "encode_data",
    "error_name",
]


class Opcode(enum.IntEnum):
    """RFC 1350 section 5 opcodes, and OACK from RFC 2347 section 2."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(enum.IntEnum):
    """RFC 1350 appendix error codes, and 8 from RFC 2347 (option negotiation refused)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3  # "disk full or allocation exceeded"
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


_ERROR_NAMES = {
    ErrorCode.NOT_DEFINED: "Not defined",
    ErrorCode.FILE_NOT_FOUND: "File not found",
    ErrorCode.ACCESS_VIOLATION: "Access violation",
    ErrorCode.DISK_FULL: "Disk full or allocation exceeded",
    ErrorCode.ILLEGAL_OPERATION: "Illegal TFTP operation",
    ErrorCode.UNKNOWN_TID: "Unknown transfer ID",
    ErrorCode.FILE_EXISTS: "File already exists",
    ErrorCode.NO_SUCH_USER: "No such user",
    ErrorCode.OPTION_REFUSED: "Option negotiation refused",
}


def error_name(code: int) -> str:
    """The RFC's name for an error code (peers may send codes the RFCs never defined)."""
    try:
        return _ERROR_NAMES[ErrorCode(code)]
    except ValueError:
        return f"Unknown error code {code}"


@dataclass(frozen=True)
class Request:
    """RRQ or WRQ: what the client asks for (RFC 1350 section 5, options per RFC 2347)."""

    opcode: Opcode  # Opcode.RRQ or Opcode.WRQ
    filename: str
    mode: str  # lower-cased; "netascii", "octet" or (obsolete) "mail"
    #: Option names lower-cased (RFC 2347: case-insensitive), values as sent, in request order.
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    block: int  # 0..65535 on the wire; transfers longer than that roll over to 0
    payload: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int  # usually an ErrorCode; peers may send others
    message: str

    def __str__(self) -> str:
        text = f"error {self.code} ({error_name(self.code)})"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class OptionAck:
    options: Mapping[str, str]


Packet = Request | Data | Ack | Error | OptionAck


class LocalProtocolError(Exception):
    """We misused the API (for example fed data to a finished transfer)."""


class RemoteProtocolError(Exception):
    """The peer sent something we must refuse; ``error`` is the ERROR packet to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = Error(code, message)


# -- encoding ---------------------------------------------------------------------------------

_HEADER = struct.Struct("!HH")  # opcode + block number (DATA, ACK) or error code (ERROR)
_DATA = Opcode.DATA.value
_ACK = Opcode.ACK.value


def encode_data(block: int, payload: bytes | memoryview) -> bytes:
    """A DATA packet; ``block`` is reduced to 16 bits (the rollover of big transfers)."""
    return _HEADER.pack(_DATA, block & 0xFFFF) + payload


def encode_ack(block: int) -> bytes:
    """An ACK packet; ``block`` is reduced to 16 bits."""
    return _HEADER.pack(_ACK, block & 0xFFFF)


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _encode_options(options: Mapping[str, str]) -> bytes:
    return b"".join(_cstr(name) + _cstr(value) for name, value in options.items())


def encode(packet: Packet) -> bytes:
    """The wire form of ``packet``.

    Raises:
        LocalProtocolError: a string holds a NUL, or a number does not fit its field.
    """
    match packet:
        case Data(block, payload):
            return encode_data(block, payload)
        case Ack(block):
            return encode_ack(block)
        case Request(opcode, filename, mode, options):
            if opcode not in (Opcode.RRQ, Opcode.WRQ):
                raise LocalProtocolError(f"a request is RRQ or WRQ, not {opcode!r}")
            strings = [filename, mode, *options.keys(), *options.values()]
            if not filename or any("\0" in s for s in strings):
                raise LocalProtocolError("file name, mode and options must be non-empty and hold no NUL")
            return struct.pack("!H", opcode) + _cstr(filename) + _cstr(mode) + _encode_options(options)
        case Error(code, message):
            if not 0 <= code <= 0xFFFF:
                raise LocalProtocolError(f"error code {code} does not fit 16 bits")
            # RFC 1350: the message is netascii, for humans; anything else becomes "?".
            text = message.replace("\0", " ").encode("ascii", "replace")
            return _HEADER.pack(Opcode.ERROR, code) + text + b"\0"
        case OptionAck(options):
            return struct.pack("!H", Opcode.OACK) + _encode_options(options)
    raise LocalProtocolError(f"not a TFTP packet: {packet!r}")  # pragma: no cover


# -- decoding ---------------------------------------------------------------------------------


def _malformed(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.ILLEGAL_OPERATION, f"malformed packet: {why}")


def _split_strings_untrusted(body: bytes) -> list[str]:
    """NUL-terminated strings; a missing final NUL is malformed (RFC 1350 section 5)."""
    if not body.endswith(b"\0"):
        raise _malformed("string not NUL-terminated")
    return [part.decode("utf-8", "surrogateescape") for part in body[:-1].split(b"\0")]


def _options_untrusted(strings: list[str]) -> dict[str, str]:
    """Name/value pairs, names lower-cased (RFC 2347 section 2: case-insensitive).

    A dangling name without a value is dropped rather than refused (some boot ROMs pad requests
    with NULs); of a repeated option the first one counts.
    """
    options: dict[str, str] = {}
    for i in range(0, len(strings) - 1, 2):
        name = strings[i].lower()
        if name and name not in options:
            options[name] = strings[i + 1]
    return options


def _decode_request_untrusted(opcode: Opcode, body: bytes) -> Request:
    strings = _split_strings_untrusted(body)
    if len(strings) < 2:
        raise _malformed("request without a mode")
    filename, mode = strings[0], strings[1].lower()
    if not filename:
        raise _malformed("empty file name")
    return Request(opcode, filename, mode, _options_untrusted(strings[2:]))


def decode_packet_untrusted(data: bytes) -> Packet:
    """Parse a datagram from the peer.

    Raises:
        RemoteProtocolError: the datagram is not a well-formed TFTP packet; its ``error`` is the
            ERROR 4 (illegal TFTP operation) to send back.
    """
    if len(data) < 4:
        # The shortest packets (ACK, an ERROR with no text, an OACK with one empty option)
        # are four octets.
        raise _malformed(f"{len(data)} octets is too short")
    opcode, number = _HEADER.unpack_from(data)
    if opcode == _DATA:
        return Data(number, data[4:])
    if opcode == _ACK:
        # Trailing octets after an ACK are tolerated: some stacks pad short frames.
        return Ack(number)
    if opcode == Opcode.ERROR:
        body = data[4:]
        message = body.split(b"\0", 1)[0].decode("ascii", "replace")
        return Error(number, message)
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        return _decode_request_untrusted(Opcode(opcode), data[2:])
    if opcode == Opcode.OACK:
        return OptionAck(_options_untrusted(_split_strings_untrusted(data[2:])))
    raise _malformed(f"unknown opcode {opcode}")
