"""TFTP option negotiation: RFC 2347 (the mechanism), 2348 (blksize), 2349 (timeout, tsize) and
7440 (windowsize).

Strategy: a request carries options as text; the server answers with an OACK naming only the
options it accepts, with the values it will use, or with no OACK at all when it accepts none (and
the transfer goes on with RFC 1350 defaults).  Both halves live here as pure functions over
dictionaries of strings: :func:`negotiate_untrusted` is the server's half, :func:`request_options`
and :func:`accept_oack_untrusted` the client's.  Each returns a :class:`TransferOptions`, the
parameters the transfer machines run with.

What is refused and what is merely adjusted follows the RFCs:

* an unknown option is ignored, never an error (RFC 2347 section 3);
* a value that is not a number, or lies outside the range the RFC defines (blksize 8-65464,
  timeout 1-255, windowsize 1-65535), is refused with ERROR 8 (RFC 2347 section 4);
* a blksize or windowsize within the RFC range but above this server's limit is lowered
  in the OACK (RFC 2348 and RFC 7440 allow the server to answer with a smaller value);
* tsize on a read request is answered with the file size; on a write request it is the size
  the client will send, which must fit the server's upload limit or the request is refused
  with ERROR 3 (RFC 2349 section 2 lets the server reject it).

A client checks the OACK the other way round: the server must not add options it was not asked
for, must not raise blksize or windowsize and must echo the timeout unchanged; anything else is
answered with ERROR 8.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netlab.proto.tftp_packet import ErrorCode, Opcode, RemoteProtocolError, Request

__all__ = [
    "BLKSIZE_MAX",
    "BLKSIZE_MIN",
    "DEFAULT_BLKSIZE",
    "TIMEOUT_MAX",
    "TIMEOUT_MIN",
    "WINDOWSIZE_MAX",
    "WINDOWSIZE_MIN",
    "ServerLimits",
    "TransferOptions",
    "accept_oack_untrusted",
    "format_options",
    "negotiate_untrusted",
    "request_options",
]

DEFAULT_BLKSIZE = 512  # octets; RFC 1350
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464  # octets; RFC 2348 section 2
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255  # seconds; RFC 2349 section 2
WINDOWSIZE_MIN, WINDOWSIZE_MAX = 1, 65535  # blocks; RFC 7440 section 3

_MAX_DIGITS = 20  # longer "numbers" are refused before int() spends time on them


@dataclass(frozen=True)
class TransferOptions:
    """The parameters of one transfer after negotiation (RFC 1350 defaults otherwise)."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    #: The negotiated retransmission timeout in seconds, or None when none was negotiated.
    timeout: int | None = None
    #: The transfer size in octets when a tsize option was exchanged.
    tsize: int | None = None


@dataclass(frozen=True)
class ServerLimits:
    """What a server is willing to negotiate."""

    max_blksize: int = BLKSIZE_MAX
    max_windowsize: int = 64
    #: The largest upload accepted, in octets (None: no limit).
    max_upload_size: int | None = None


def _number_untrusted(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
        raise RemoteProtocolError(ErrorCode.OPTION_REFUSED, f"{name} {value!r} is not a number")
    number = int(value)
    if not low <= number <= high:
        raise RemoteProtocolError(ErrorCode.OPTION_REFUSED, f"{name} {number} is outside {low}-{high}")
    return number


def negotiate_untrusted(
    request: Request, limits: ServerLimits, *, file_size: int | None
) -> tuple[dict[str, str], TransferOptions]:
    """The server's answer to the options of ``request``.

    Args:
        request: the decoded RRQ or WRQ.
        limits: this server's limits.
        file_size: for a read, the size to report for tsize (None: do not acknowledge tsize,
            as for netascii, whose size on the wire is not known before reading the file).

    Returns:
        The options for the OACK (empty: send no OACK) and the parameters of the transfer.

    Raises:
        RemoteProtocolError: ERROR 8 for an option value that is malformed or out of its RFC
            range, ERROR 3 for a write whose tsize exceeds the upload limit.
    """
    opts = request.options
    oack: dict[str, str] = {}
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, None
    if "blksize" in opts:
        wanted = _number_untrusted("blksize", opts["blksize"], BLKSIZE_MIN, BLKSIZE_MAX)
        blksize = min(wanted, limits.max_blksize)
        oack["blksize"] = str(blksize)
    if "timeout" in opts:
        timeout = _number_untrusted("timeout", opts["timeout"], TIMEOUT_MIN, TIMEOUT_MAX)
        oack["timeout"] = str(timeout)  # RFC 2349: the server echoes the value, or ignores it
    if "tsize" in opts:
        size = _number_untrusted("tsize", opts["tsize"], 0, 2**63)
        if request.opcode == Opcode.WRQ:
            if limits.max_upload_size is not None and size > limits.max_upload_size:
                raise RemoteProtocolError(
                    ErrorCode.DISK_FULL, f"file of {size} bytes exceeds the limit of {limits.max_upload_size}"
                )
            tsize = size
        elif file_size is not None:
            tsize = file_size
        if tsize is not None:
            oack["tsize"] = str(tsize)
    if "windowsize" in opts:
        wanted = _number_untrusted("windowsize", opts["windowsize"], WINDOWSIZE_MIN, WINDOWSIZE_MAX)
        windowsize = min(wanted, limits.max_windowsize)
        oack["windowsize"] = str(windowsize)
    return oack, TransferOptions(blksize, windowsize, timeout, tsize)


def request_options(
    *,
    blksize: int | None = None,
    windowsize: int | None = None,
    timeout: int | None = None,
    tsize: int | None = None,
) -> dict[str, str]:
    """The options a client puts in its request; None leaves an option out.

    For a read, pass ``tsize=0`` to ask for the file size (RFC 2349 section 2).

    Raises:
        ValueError: a value outside its RFC range.
    """
    checks = (
        ("blksize", blksize, BLKSIZE_MIN, BLKSIZE_MAX),
        ("timeout", timeout, TIMEOUT_MIN, TIMEOUT_MAX),
        ("tsize", tsize, 0, 2**63),
        ("windowsize", windowsize, WINDOWSIZE_MIN, WINDOWSIZE_MAX),
    )
    options: dict[str, str] = {}
    for name, value, low, high in checks:
        if value is None:
            continue
        if not low <= value <= high:
            raise ValueError(f"{name} must be {low}-{high}, got {value}")
        options[name] = str(value)
    return options


def accept_oack_untrusted(requested: Mapping[str, str], oack: Mapping[str, str]) -> TransferOptions:
    """The client's check of the server's OACK against what it asked for (RFC 2347 section 4).

    Raises:
        RemoteProtocolError: ERROR 8, the OACK names an option that was not requested or a value
            the client cannot accept.
    """
    for name in oack:
        if name not in requested:
            raise RemoteProtocolError(ErrorCode.OPTION_REFUSED, f"server acknowledged unasked option {name}")
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, None
    if "blksize" in oack:
        blksize = _number_untrusted("blksize", oack["blksize"], BLKSIZE_MIN, int(requested["blksize"]))
    if "windowsize" in oack:
        windowsize = _number_untrusted(
            "windowsize", oack["windowsize"], WINDOWSIZE_MIN, int(requested["windowsize"])
        )
    if "timeout" in oack:
        wanted = int(requested["timeout"])
        timeout = _number_untrusted("timeout", oack["timeout"], wanted, wanted)
    if "tsize" in oack:
        tsize = _number_untrusted("tsize", oack["tsize"], 0, 2**63)
    return TransferOptions(blksize, windowsize, timeout, tsize)


def format_options(options: Mapping[str, str]) -> str:
    """``name=value,...`` for log lines; ``-`` when there are none."""
    return ",".join(f"{k}={v}" for k, v in options.items()) or "-"
