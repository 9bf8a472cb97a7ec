"""The one plug-in point of the transport engine: how a protocol acknowledges and retransmits.

Strategy: Go-Back-N, Selective Repeat and stop-and-wait share everything except three things,
and a ``RetransmitPolicy`` owns exactly those:

* what an acknowledgement means to the sender (cumulative only, or one segment at a time), and
  when duplicates call for a fast retransmission;
* the retransmission timers (one for the oldest segment, or one per segment);
* what the receiver does with a segment that is not the next one (discard, or buffer).

The engine owns the rest: the handshake, the close, the RTO estimator (it backs off and passes the
current RTO in), flow control and the retry limit.  Policies see windows of opaque items and
absolute sequence numbers only, never the segment format, in the way aioquic's congestion control
plugs into its connection through an ABC with keyword-only ``now``.  A policy registers itself
under a protocol name with ``register_policy``; ``create_policy`` builds one by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from netlab.transport.window import InFlight, ReceiveWindow, SendWindow, WindowRule

__all__ = [
    "DUP_ACK_THRESHOLD",
    "Ack",
    "AckOutcome",
    "Receipt",
    "RetransmitPolicy",
    "create_policy",
    "policy_names",
    "register_policy",
]

T = TypeVar("T")

#: Duplicate acknowledgements that trigger a fast retransmission (RFC 5681 section 3.2).
DUP_ACK_THRESHOLD = 3


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement as the sender sees it, in absolute sequence numbers."""

    cumulative: int  # the peer has everything below this number
    selective: int | None  # the one segment this ACK was sent for (Selective Repeat)
    window: int  # the receive window the peer advertised, in segments


@dataclass(slots=True)
class AckOutcome(Generic[T]):
    """What an acknowledgement did to the send window."""

    acked: list[InFlight[T]] = field(default_factory=list)  # newly acknowledged, oldest first
    #: The entry whose arrival caused this ACK: an RTT sample, if it was sent only once (Karn).
    sample: InFlight[T] | None = None
    duplicate: bool = False
    retransmit: list[int] = field(default_factory=list)  # fast retransmission, absolute numbers


@dataclass(slots=True)
class Receipt(Generic[T]):
    """What the receiver does with one arriving segment."""

    deliver: list[T] = field(default_factory=list)  # now in order, for the application
    ack: bool = False  # answer with an acknowledgement
    selective: int | None = None  # ... for this one segment (absolute), else cumulative only
    expected: bool = True  # False: outside any window this connection can have; count and drop


class RetransmitPolicy(abc.ABC):
    """How acknowledgements, timers and receiver buffering work for one protocol.

    The methods are generic in the window's item type, so one policy serves a send window of
    encoded segments and a receive window of payloads alike.
    """

    #: The protocol name on the command line and in the SYN.
    name: ClassVar[str]
    #: How the receiver acknowledges, which fixes the largest legal window.
    rule: ClassVar[WindowRule]

    def __init__(self) -> None:
        self._dup_acks = 0
        self._last_window: int | None = None

    # -- sender --------------------------------------------------------------------------------

    @abc.abstractmethod
    def on_sent(self, window: SendWindow[T], seq: int, *, now: float, rto: float) -> None:
        """``seq`` was just (re)transmitted: arm whatever timer covers it."""

    @abc.abstractmethod
    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float, rto: float) -> AckOutcome[T]:
        """Apply an acknowledgement whose numbers the engine has checked against ``window``."""

    @abc.abstractmethod
    def next_deadline(self) -> float | None:
        """The earliest retransmission deadline (absolute seconds), or ``None``."""

    @abc.abstractmethod
    def expired(self, window: SendWindow[T], *, now: float, rto: float) -> list[int]:
        """The timer fired at ``now``: disarm what is due and return the numbers to retransmit.

        The engine then backs the RTO off (once per round), retransmits each number and calls
        ``on_sent`` for it, which arms the timer again.
        """

    @abc.abstractmethod
    def clear_timers(self) -> None:
        """Forget every timer (the connection ended)."""

    # -- receiver ------------------------------------------------------------------------------

    @abc.abstractmethod
    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        """A DATA or FIN segment numbered ``wire_seq`` (k bits) arrived."""

    # -- shared --------------------------------------------------------------------------------

    def _is_duplicate(self, window: SendWindow[T], ack: Ack, base_before: int) -> bool:
        """Count a duplicate ACK: nothing new acknowledged cumulatively, data outstanding, and the
        same window as before (a window update is not a duplicate; RFC 5681 section 2)."""
        duplicate = (
            ack.cumulative == base_before == window.base
            and window.in_flight > 0
            and (self._last_window is None or ack.window == self._last_window)
        )
        self._last_window = ack.window
        if duplicate:
            self._dup_acks += 1
        elif window.base != base_before:
            self._dup_acks = 0
        return duplicate

    @property
    def fast_retransmit_due(self) -> bool:
        """True exactly once per loss: on the third duplicate (RFC 5681 section 3.2)."""
        return self._dup_acks == DUP_ACK_THRESHOLD


_REGISTRY: dict[str, Callable[[], RetransmitPolicy]] = {}


def register_policy(name: str, factory: Callable[[], RetransmitPolicy]) -> None:
    """Make ``factory`` available as protocol ``name``."""
    _REGISTRY[name] = factory


def create_policy(name: str) -> RetransmitPolicy:
    """A fresh policy for protocol ``name``.

    Raises:
        ValueError: no policy is registered under ``name``.
    """
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(sorted(_REGISTRY))}") from None


def policy_names() -> list[str]:
    return sorted(_REGISTRY)
