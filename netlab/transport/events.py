"""Events a transport ``Connection`` hands to its application through ``next_event()``.

Every event is a frozen dataclass, as in h11 and wsproto.  The order is fixed by the protocol:
``Connected`` first, then ``DataReceived`` in stream order, ``EndOfData`` once the peer's FIN is
delivered, and finally ``Closed`` (both directions done) or ``ConnectionFailed`` (the retry limit,
a RST, or a refused handshake).  After ``Closed`` or ``ConnectionFailed`` nothing more happens.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Closed", "Connected", "ConnectionFailed", "DataReceived", "EndOfData", "Event"]


@dataclass(frozen=True, slots=True)
class Connected:
    """The three-way handshake is complete; data may flow both ways."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes from the peer, in order, each delivered exactly once."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The peer's FIN: it will send no more (our direction may still be open)."""


@dataclass(frozen=True, slots=True)
class Closed:
    """Both directions are finished (after the linger period, on the side that lingers)."""


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection ended abnormally; ``reason`` says why."""

    reason: str


Event = Connected | DataReceived | EndOfData | Closed | ConnectionFailed
