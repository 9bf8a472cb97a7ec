"""The one plug-in point of the transport engine: how a protocol acknowledges and retransmits.

Strategy: Go-Back-N, Selective Repeat and stop-and-wait share everything except three things,
and a ``RetransmitPolicy`` owns exactly those:

* what an acknowledgement means to the sender (cumulative only, or one segment at a time), and
  when duplicates call for a fast retransmission;
* the retransmission timers (one for the oldest segment, or one per segment);
* what the receiver does with a segment that is not the next one (discard, or buffer).

The engine owns the rest: the handshake, the close, the RTO estimator (policies read SRTT and the
current RTO from it, the engine alone samples it and backs it off), flow control and the retry
limit.  Policies see windows of opaque items and absolute sequence numbers only, never the segment
format, in the way aioquic's congestion control plugs into its connection through an ABC with
keyword-only ``now``.  A timer expiry comes back as an ``Expiry`` that says why each number is to
be sent again, because only a retransmission timeout backs the RTO off and counts towards the
retry limit; a loss inferred from acknowledgements or a tail-loss probe does neither.  A policy
registers itself under a protocol name with ``register_policy``; ``create_policy`` builds one by
name.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from netlab.transport.rto import RtoEstimator
from netlab.transport.window import InFlight, ReceiveWindow, SendWindow, WindowRule

__all__ = [
    "DUP_ACK_THRESHOLD",
    "Ack",
    "AckOutcome",
    "Expiry",
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
    retransmit: list[int] = field(default_factory=list)  # presumed lost now: send again at once


@dataclass(slots=True)
class Expiry:
    """What a policy's timer asks for, by cause (absolute numbers, each at most once)."""

    #: Retransmission timeout (RFC 6298 section 5.4): send again; back off once per round.
    timed_out: list[int] = field(default_factory=list)
    #: Presumed lost once a reordering window passed (RFC 8985 section 6.3): send again.
    lost: list[int] = field(default_factory=list)
    #: A tail-loss probe (RFC 8985 section 7.3): send this one again to draw an acknowledgement.
    probe: int | None = None

    def __bool__(self) -> bool:
        return bool(self.timed_out or self.lost) or self.probe is not None


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

    Args:
        rtt: the connection's RTT estimator, read for SRTT and the current RTO (a fresh one when
            the policy is only built to look at its ``rule``).
    """

    #: The protocol name on the command line and in the SYN.
    name: ClassVar[str]
    #: How the receiver acknowledges, which fixes the largest legal window.
    rule: ClassVar[WindowRule]

    def __init__(self, rtt: RtoEstimator | None = None) -> None:
        self._rtt = rtt if rtt is not None else RtoEstimator()
        self._dup_acks = 0
        self._last_window: int | None = None
        self._min_rtt = math.inf  # the smallest RTT measured (RFC 8985 section 6.1's RACK.min_RTT)

    # -- sender --------------------------------------------------------------------------------

    @abc.abstractmethod
    def on_sent(self, window: SendWindow[T], seq: int, *, now: float) -> None:
        """``seq`` was just (re)transmitted: arm whatever timer covers it."""

    @abc.abstractmethod
    def on_ack(self, window: SendWindow[T], ack: Ack, *, now: float) -> AckOutcome[T]:
        """Apply an acknowledgement whose numbers the engine has checked against ``window``."""

    @abc.abstractmethod
    def next_deadline(self) -> float | None:
        """The earliest retransmission deadline (absolute seconds), or ``None``."""

    @abc.abstractmethod
    def expired(self, window: SendWindow[T], *, now: float) -> Expiry:
        """A timer fired at ``now``: disarm what is due and say what to retransmit, and why.

        The engine backs the RTO off (once per round of ``timed_out`` that includes the oldest
        number), retransmits each number and calls ``on_sent`` for it, which arms timers again.
        """

    @abc.abstractmethod
    def clear_timers(self) -> None:
        """Forget every timer (the connection ended)."""

    # -- receiver ------------------------------------------------------------------------------

    @abc.abstractmethod
    def on_data(self, window: ReceiveWindow[T], wire_seq: int, item: T) -> Receipt[T]:
        """A DATA or FIN segment numbered ``wire_seq`` (k bits) arrived."""

    # -- shared --------------------------------------------------------------------------------

    def _known_min_rtt(self) -> float:
        """The smallest RTT measured, or the handshake's estimate before the first one."""
        return self._min_rtt if self._min_rtt < math.inf else (self._rtt.srtt or 0.0)

    def _is_duplicate(self, window: SendWindow[T], ack: Ack, base_before: int) -> bool:
        """Count a duplicate ACK: nothing new acknowledged cumulatively, data outstanding, and the
        same window as before (a window update is not a duplicate; RFC 5681 section 2)."""
        duplicate = (
            ack.cumulative == base_before == window.base
            and window.in_flight > 0
            and ack.window > 0  # a closed window answers a probe; it reports no hole
            and (self._last_window is None or ack.window == self._last_window)
        )
        self._last_window = ack.window
        if duplicate:
            self._dup_acks += 1
        elif window.base != base_before:
            self._dup_acks = 0
        return duplicate


PolicyFactory = Callable[[RtoEstimator | None], RetransmitPolicy]
_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``factory`` available as protocol ``name``."""
    _REGISTRY[name] = factory


def create_policy(name: str, rtt: RtoEstimator | None = None) -> RetransmitPolicy:
    """A fresh policy for protocol ``name`` that reads the RTT estimator ``rtt``.

    Raises:
        ValueError: no policy is registered under ``name``.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(sorted(_REGISTRY))}") from None
    return factory(rtt)


def policy_names() -> list[str]:
    return sorted(_REGISTRY)
