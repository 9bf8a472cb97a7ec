"""Connection states and the one table of legal transitions.

Strategy: as in h11's ``_state.py``, every state change goes through ``TRANSITIONS``; a missing
entry is a bug in the engine or a misuse of the API, reported as ``LocalProtocolError``.  The
states are TCP's (RFC 9293 section 3.3.2) without the ones this protocol does not need: there is no
passive open on an existing connection (a listener creates a ``Connection`` per client), and no
simultaneous open.

    client:  SYN_SENT --SYN-ACK--> ESTABLISHED
    server:  LISTEN --SYN--> SYN_RCVD --ACK (or DATA, FIN)--> ESTABLISHED

    ESTABLISHED --our FIN queued--> FIN_WAIT_1 --acked--> FIN_WAIT_2 --peer FIN--> TIME_WAIT
    FIN_WAIT_1 --peer FIN--> CLOSING --our FIN acked--> TIME_WAIT --linger--> CLOSED
    ESTABLISHED --peer FIN--> CLOSE_WAIT --our FIN queued--> LAST_ACK --acked--> CLOSED

The side that acknowledges the last FIN lingers in TIME_WAIT, so that if that ACK is lost it can
answer the peer's retransmitted FIN (RFC 9293 section 3.6).  Any live state fails on a RST, on the
retry limit or on a refused handshake, and closes at once on an abort.
"""

from __future__ import annotations

import enum

from netlab.transport.errors import LocalProtocolError

__all__ = ["SENDING", "TERMINAL", "TRANSITIONS", "ConnState", "Trigger", "next_state"]


class ConnState(enum.Enum):
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RCVD = "SYN_RCVD"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class Trigger(enum.Enum):
    SYN_RECEIVED = "an acceptable SYN arrived"
    SYN_ACK_RECEIVED = "an acceptable SYN-ACK arrived"
    HANDSHAKE_ACKED = "the client acknowledged our SYN-ACK"
    APP_EOF = "the application ended its direction"
    FIN_ACKED = "the peer acknowledged our FIN"
    PEER_FIN = "the peer's FIN was delivered"
    LINGER_EXPIRED = "the linger time passed"
    ABORT = "the application aborted"
    RESET = "a RST arrived"
    GIVE_UP = "the retry limit was reached"
    REFUSE = "the handshake was refused"


S = ConnState
TERMINAL = frozenset({S.CLOSED, S.FAILED})
_LIVE = [s for s in S if s not in TERMINAL]
#: States in which our direction still carries segments (data, or a FIN not yet acknowledged).
SENDING = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.LAST_ACK, S.CLOSING})

TRANSITIONS: dict[tuple[ConnState, Trigger], ConnState] = {
    (S.LISTEN, Trigger.SYN_RECEIVED): S.SYN_RCVD,
    (S.SYN_SENT, Trigger.SYN_ACK_RECEIVED): S.ESTABLISHED,
    (S.SYN_RCVD, Trigger.HANDSHAKE_ACKED): S.ESTABLISHED,
    (S.ESTABLISHED, Trigger.APP_EOF): S.FIN_WAIT_1,
    (S.ESTABLISHED, Trigger.PEER_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, Trigger.FIN_ACKED): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, Trigger.PEER_FIN): S.CLOSING,
    (S.FIN_WAIT_2, Trigger.PEER_FIN): S.TIME_WAIT,
    (S.CLOSING, Trigger.FIN_ACKED): S.TIME_WAIT,
    (S.CLOSE_WAIT, Trigger.APP_EOF): S.LAST_ACK,
    (S.LAST_ACK, Trigger.FIN_ACKED): S.CLOSED,
    (S.TIME_WAIT, Trigger.LINGER_EXPIRED): S.CLOSED,
    **{(s, Trigger.ABORT): S.CLOSED for s in _LIVE},
    **{(s, Trigger.RESET): S.FAILED for s in _LIVE},
    **{(s, Trigger.GIVE_UP): S.FAILED for s in _LIVE},
    **{(s, Trigger.REFUSE): S.FAILED for s in (S.LISTEN, S.SYN_SENT, S.SYN_RCVD)},
}


def next_state(state: ConnState, trigger: Trigger) -> ConnState:
    """The state ``trigger`` leads to from ``state``.

    Raises:
        LocalProtocolError: the table has no such transition.
    """
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise LocalProtocolError(
            f"can't handle {trigger.name} ({trigger.value}) in state {state.name}"
        ) from None
