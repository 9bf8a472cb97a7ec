"""DNS over a byte stream: the two-octet length framing of RFC 1035 section 4.2.2.

Strategy: a stream machine in h11's shape.  ``receive_data`` appends bytes (``b""`` is the end of
the stream), ``next_event`` cuts one :class:`Message` off the front or says :data:`NEED_DATA`,
and ``send`` frames an outgoing message.  Several messages may follow each other on one
connection, in both directions, and replies may come back in any order (RFC 7766 sections 6.2.1
and 6.2.1.1); matching them to queries is the user's job (by message ID).  A message announced
longer than ``max_message`` is refused before its octets arrive, so a peer cannot make us buffer
more than we chose to, and a stream that ends inside a message is the peer's error.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from netlab.proto.dns_wire import LocalProtocolError, RemoteProtocolError

__all__ = ["MAX_MESSAGE", "NEED_DATA", "DnsStream", "EndOfStream", "Message", "NeedData"]

MAX_MESSAGE = 65535  # octets: what a two-octet length can say


class NeedData(enum.Enum):
    NEED_DATA = "need data"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class Message:
    data: bytes


@dataclass(frozen=True)
class EndOfStream:
    pass


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # the peer ended its side (receive_data(b""))


class DnsStream:
    """One side of a DNS-over-TCP connection."""

    def __init__(self, *, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._state = _State.OPEN

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message (a partial one, say)."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the peer; ``b""`` means it closed its side.

        Raises:
            LocalProtocolError: data after the end of the stream.
        """
        if self._state is _State.CLOSED:
            raise LocalProtocolError("data received after the end of the stream")
        if data:
            self._buffer += data
        else:
            self._state = _State.CLOSED

    def next_event(self) -> Message | EndOfStream | NeedData:
        """The next whole message, the end of the stream, or NEED_DATA.

        Raises:
            RemoteProtocolError: a message announced longer than ``max_message``, or the stream
                ended inside a message.
        """
        buffer = self._buffer
        if len(buffer) >= 2:
            (length,) = struct.unpack_from("!H", buffer)
            if length > self.max_message:
                raise RemoteProtocolError(f"a message of {length} octets (at most {self.max_message})")
            if len(buffer) >= 2 + length:
                data = bytes(buffer[2 : 2 + length])
                del buffer[: 2 + length]
                return Message(data)
        if self._state is _State.CLOSED:
            if buffer:
                raise RemoteProtocolError(f"the stream ended inside a message ({len(buffer)} octets)")
            return EndOfStream()
        return NEED_DATA

    def send(self, message: bytes) -> bytes:
        """The octets that carry ``message`` on the stream.

        Raises:
            LocalProtocolError: ``message`` is too long to frame.
        """
        if len(message) > MAX_MESSAGE:
            raise LocalProtocolError(f"a message of {len(message)} octets cannot be framed")
        return struct.pack("!H", len(message)) + message
