"""Connection parameters (validated once, up front) and counters.

A client proposes its ``protocol``, ``seq_bits``, ``window`` and ``mss`` in the SYN.  A server
treats its own ``window`` and ``mss`` as upper bounds: it adopts the client's protocol and k,
settles on the smaller window and the smaller mss, and says so in the SYN-ACK; the client accepts
nothing larger than it asked for.  A server that should carry large segments (on loopback, say)
therefore needs a large ``mss`` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

# Importing the policies registers them under their protocol names.
from netlab.transport import gbn as _gbn  # noqa: F401
from netlab.transport import sr as _sr  # noqa: F401
from netlab.transport.policy import create_policy
from netlab.transport.segment import MAX_MSS, PROTOCOL_CODES
from netlab.transport.seq import MAX_SEQ_BITS, MIN_SEQ_BITS, SeqSpace
from netlab.transport.window import check_window_size

__all__ = ["TransportParams", "TransportStats", "effective_window"]


def effective_window(protocol: str, window: int) -> int:
    """The window a protocol really uses: stop-and-wait is a window of one."""
    return 1 if protocol == "saw" else window


@dataclass(frozen=True)
class TransportParams:
    """How a connection behaves.  Illegal combinations raise ``ValueError`` at construction.

    Attributes:
        protocol: "gbn" (Go-Back-N), "sr" (Selective Repeat) or "saw" (stop-and-wait).
        window: N, the segments that may be outstanding (sent and not acknowledged); GBN needs
            N <= 2**k - 1, SR N <= 2**(k-1); saw ignores it (1).  An SR receiver buffers up to
            ``receive_buffer`` bytes out of order (at most 2**(k-1) segments), so an SR sender
            goes on sending past a lost segment while its repair is under way.
        seq_bits: k, the width of sequence numbers on the wire (3..32).
        mss: the largest DATA payload, in bytes.
        max_retries: consecutive timer expiries without progress before ConnectionFailed.
        initial_rto, min_rto, max_rto: RFC 6298 timer values, in seconds.
        linger: seconds the side that sends the last ACK keeps answering a retransmitted FIN.
        send_buffer: bytes the application may have queued and unacknowledged (backpressure).
        receive_buffer: bytes of received data the application may leave unread before the
            advertised window closes (flow control).
        idle_timeout: seconds without any datagram from the peer after which a connection
            fails, or ``None`` (the default) to wait for ever.  The retry limit only covers a
            side with something to retransmit; a side that only receives learns that its peer
            vanished from this timeout (there are no keepalives).
    """

    protocol: str = "sr"
    window: int = 32
    seq_bits: int = 16
    mss: int = 1200
    max_retries: int = 10
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    linger: float = 2.0
    send_buffer: int = 1 << 20
    receive_buffer: int = 1 << 22
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOL_CODES:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOL_CODES)}, got {self.protocol!r}")
        if not MIN_SEQ_BITS <= self.seq_bits <= MAX_SEQ_BITS:
            raise ValueError(f"seq_bits (k) must be {MIN_SEQ_BITS}..{MAX_SEQ_BITS}, got {self.seq_bits}")
        policy = create_policy(self.protocol)
        if self.protocol != "saw":
            check_window_size(self.window, SeqSpace(self.seq_bits), policy.rule)
        if not 1 <= self.mss <= MAX_MSS:
            raise ValueError(f"mss must be 1..{MAX_MSS} bytes, got {self.mss}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.min_rto <= self.initial_rto <= self.max_rto:
            raise ValueError(
                "need 0 < min_rto <= initial_rto <= max_rto, got "
                f"{self.min_rto}, {self.initial_rto}, {self.max_rto}"
            )
        if self.linger < 0:
            raise ValueError(f"linger must be >= 0 seconds, got {self.linger}")
        if self.send_buffer < 1:
            raise ValueError(f"send_buffer must be >= 1 byte, got {self.send_buffer}")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, got {self.idle_timeout}")
        if self.receive_buffer < self.mss:
            raise ValueError(f"receive_buffer ({self.receive_buffer}) must hold one mss ({self.mss})")

    @property
    def effective_window(self) -> int:
        return effective_window(self.protocol, self.window)


@dataclass(slots=True)
class TransportStats:
    """Counters of one connection, for summaries, logs and tests."""

    bytes_sent: int = 0  # application bytes sent for the first time
    bytes_received: int = 0  # application bytes delivered in order
    segments_sent: int = 0  # every datagram handed out, retransmissions and ACKs included
    segments_received: int = 0  # every datagram fed in, good or bad
    retransmissions: int = 0  # segments sent again (timeouts, fast retransmits, handshake)
    timeouts: int = 0  # retransmission timer expiries
    corrupt_dropped: int = 0  # corrupt, truncated or unknown datagrams
    unexpected_dropped: int = 0  # valid segments that do not fit the connection's state or window
    dup_acks: int = 0
    fast_retransmits: int = 0  # losses inferred from acknowledgements (dup ACKs, RACK)
    loss_probes: int = 0  # tail-loss probes (RFC 8985 section 7), also in retransmissions
    srtt: float | None = None  # seconds, once measured
    rto: float = 1.0  # seconds, the current retransmission timeout
