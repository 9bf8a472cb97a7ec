"""The two kinds of error of the transport core, split the way h11 splits them.

``LocalProtocolError`` means the application misused the API (sending after ``send_eof()``, an
illegal parameter).  ``RemoteProtocolError`` means the peer misbehaved; it carries the reply the
connection answers with, which for this protocol is always a RST segment.  Peer bytes never raise
out of ``Connection.receive_datagram()``: a bad segment is dropped and counted, a bad handshake
ends the connection with a ``ConnectionFailed`` event.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "TransportError"]


class TransportError(Exception):
    """Base class of the transport core's errors."""


class LocalProtocolError(TransportError):
    """The local application asked for something the connection cannot do in its state."""


class RemoteProtocolError(TransportError):
    """The peer sent something this connection must refuse.

    Args:
        message: what was wrong, for logs and the ``ConnectionFailed`` reason.
        reply: the datagram to answer with (an encoded RST), or ``None`` to stay silent.
    """

    def __init__(self, message: str, *, reply: bytes | None = None) -> None:
        super().__init__(message)
        self.reply = reply
