"""The reliable-transport core: sans-I/O segments, windows, timers and the connection engine.

``engine.Connection`` is the datagram machine; ``gbn``/``sr`` plug into it through the
``policy.RetransmitPolicy`` ABC.  ``seq``, ``window``, ``deadlines`` and ``rto`` know nothing of the
segment format, so other windowed protocols (TFTP's RFC 7440 windows) can stand on them.
"""

from netlab.transport.engine import Connection, ConnState, Role, TransportParams, TransportStats
from netlab.transport.errors import LocalProtocolError, RemoteProtocolError
from netlab.transport.events import Closed, Connected, ConnectionFailed, DataReceived, EndOfData, Event
from netlab.transport.segment import Segment, SegmentType, decode_segment_untrusted, encode_segment

__all__ = [
    "Closed",
    "ConnState",
    "Connected",
    "Connection",
    "ConnectionFailed",
    "DataReceived",
    "EndOfData",
    "Event",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Role",
    "Segment",
    "SegmentType",
    "TransportParams",
    "TransportStats",
    "decode_segment_untrusted",
    "encode_segment",
]
