"""Option negotiation (RFC 2347/2348/2349/7440), both halves."""

from __future__ import annotations

import pytest

from netlab.proto.tftp_options import (
    ServerLimits,
    TransferOptions,
    accept_oack_untrusted,
    format_options,
    negotiate_untrusted,
    request_options,
)
from netlab.proto.tftp_packet import ErrorCode, Opcode, RemoteProtocolError, Request

LIMITS = ServerLimits(max_blksize=8192, max_windowsize=32, max_upload_size=1000)


def rrq(**options: str) -> Request:
    return Request(Opcode.RRQ, "f", "octet", options)


def wrq(**options: str) -> Request:
    return Request(Opcode.WRQ, "f", "octet", options)


NEGOTIATED = [
    # (request, file size, OACK, parameters)
    (rrq(), 77, {}, TransferOptions()),
    (rrq(blksize="1428"), 77, {"blksize": "1428"}, TransferOptions(blksize=1428)),
    (rrq(blksize="8"), 77, {"blksize": "8"}, TransferOptions(blksize=8)),
    # Within the RFC range but above our limit: lowered, not refused (RFC 2348).
    (rrq(blksize="65464"), 77, {"blksize": "8192"}, TransferOptions(blksize=8192)),
    (rrq(windowsize="64"), 77, {"windowsize": "32"}, TransferOptions(windowsize=32)),
    (rrq(timeout="3"), 77, {"timeout": "3"}, TransferOptions(timeout=3)),
    (rrq(tsize="0"), 77, {"tsize": "77"}, TransferOptions(tsize=77)),
    # netascii: size on the wire unknown, tsize left out of the OACK.
    (rrq(tsize="0"), None, {}, TransferOptions()),
    (wrq(tsize="1000"), None, {"tsize": "1000"}, TransferOptions(tsize=1000)),
    # Unknown options are ignored (RFC 2347 section 3); no OACK when nothing is left.
    (rrq(multicast="", utimeout="5000"), 77, {}, TransferOptions()),
]


@pytest.mark.parametrize(("request_", "size", "oack", "params"), NEGOTIATED)
def test_server_negotiation(
    request_: Request, size: int | None, oack: dict[str, str], params: TransferOptions
) -> None:
    assert negotiate_untrusted(request_, LIMITS, file_size=size) == (oack, params)


@pytest.mark.parametrize(
    "options",
    [
        {"blksize": "7"},
        {"blksize": "65465"},
        {"blksize": "1e3"},
        {"blksize": " 512"},
        {"blksize": "+512"},
        {"blksize": ""},
        {"timeout": "0"},
        {"timeout": "256"},
        {"windowsize": "0"},
        {"windowsize": "65536"},
        {"tsize": "-1"},
        {"tsize": "9" * 30},
    ],
)
def test_out_of_range_or_malformed_values_are_refused_with_error_8(options: dict[str, str]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        negotiate_untrusted(rrq(**options), LIMITS, file_size=10)
    assert info.value.error.code == ErrorCode.OPTION_REFUSED


def test_an_upload_announced_too_big_is_refused_with_error_3() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        negotiate_untrusted(wrq(tsize="1001"), LIMITS, file_size=None)
    assert info.value.error.code == ErrorCode.DISK_FULL


def test_client_request_options() -> None:
    assert request_options() == {}
    assert request_options(blksize=1428, windowsize=16, timeout=2, tsize=0) == {
        "blksize": "1428",
        "timeout": "2",
        "tsize": "0",
        "windowsize": "16",
    }
    with pytest.raises(ValueError, match="blksize"):
        request_options(blksize=65465)
    with pytest.raises(ValueError, match="windowsize"):
        request_options(windowsize=0)


ASKED = {"blksize": "1428", "windowsize": "16", "timeout": "2", "tsize": "0"}


@pytest.mark.parametrize(
    ("oack", "params"),
    [
        ({}, TransferOptions()),
        (ASKED | {"tsize": "4096"}, TransferOptions(1428, 16, 2, 4096)),
        ({"blksize": "512", "windowsize": "4"}, TransferOptions(blksize=512, windowsize=4)),
    ],
)
def test_client_accepts_what_it_asked_for_or_less(oack: dict[str, str], params: TransferOptions) -> None:
    assert accept_oack_untrusted(ASKED, oack) == params


@pytest.mark.parametrize(
    "oack",
    [
        {"blksize": "1500"},  # more than asked
        {"windowsize": "17"},
        {"timeout": "3"},  # must be echoed unchanged (RFC 2349)
        {"blksize": "4"},
        {"tsize": "big"},
    ],
)
def test_client_refuses_an_oack_it_cannot_use(oack: dict[str, str]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        accept_oack_untrusted(ASKED, oack)
    assert info.value.error.code == ErrorCode.OPTION_REFUSED


def test_client_refuses_options_it_never_asked_for() -> None:
    with pytest.raises(RemoteProtocolError, match="unasked option windowsize"):
        accept_oack_untrusted({"blksize": "512"}, {"windowsize": "4"})


def test_format_options_for_logs() -> None:
    assert format_options({}) == "-"
    assert format_options({"blksize": "512", "tsize": "0"}) == "blksize=512,tsize=0"
