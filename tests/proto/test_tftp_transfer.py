"""The TFTP transfer machines in virtual time: lockstep, windows, rollover, loss, timers,
negotiation from the client's side, and every way a transfer ends."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.proto.tftp_options import TransferOptions
from netlab.proto.tftp_packet import (
    Ack,
    Data,
    Error,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    OptionAck,
    Request,
    decode_packet_untrusted,
    encode,
    encode_ack,
    encode_data,
)
from netlab.proto.tftp_receiver import TftpReceiver
from netlab.proto.tftp_sender import TftpSender
from netlab.proto.tftp_transfer import (
    FinalBlockReceived,
    Negotiated,
    State,
    TransferComplete,
    TransferFailed,
)
from tests.proto.tftp_sim import Network, feed_all, read_pair, simulate, write_pair


def packets(datagrams: list[bytes]) -> list[object]:
    return [decode_packet_untrusted(d) for d in datagrams]


def sent_by(net: Network, who: str) -> list[object]:
    return [decode_packet_untrusted(d) for name, d in net.sent if name == who]


def blocks_sent(net: Network, who: str = "server") -> list[int]:
    return [p.block for p in sent_by(net, who) if isinstance(p, Data)]


def events(machine: TftpSender | TftpReceiver) -> list[object]:
    out: list[object] = []
    while (event := machine.next_event()) is not None:
        out.append(event)
    return out


# -- whole transfers --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
def test_lockstep_read_sends_one_short_final_block(size: int) -> None:
    data = random.Random(size).randbytes(size)
    client, server = read_pair({}, size)
    net = Network()
    assert simulate(client, server, data, net) == data
    assert client.state is State.COMPLETE
    assert server.state is State.COMPLETE
    # A file of a multiple of 512 bytes ends with an empty block (RFC 1350 section 6).
    assert blocks_sent(net) == list(range(1, size // 512 + 2))
    assert client.bytes_transferred == server.bytes_transferred == size


def test_a_window_is_acknowledged_once() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: 20 full blocks and an empty final one
    client, server = read_pair({"windowsize": "4"}, len(data))
    net = Network()
    assert simulate(client, server, data, net) == data
    acks = [p.block for p in sent_by(net, "client") if isinstance(p, Ack)]
    assert acks == [0, 4, 8, 12, 16, 20, 21]


def test_write_with_options_end_to_end() -> None:
    data = random.Random(1).randbytes(70_000)
    client, server = write_pair({"blksize": "1428", "windowsize": "8", "tsize": str(len(data))})
    net = Network()
    assert simulate(client, server, data, net) == data
    options = TransferOptions(1428, 8, None, len(data))
    assert ("client", Negotiated(options, acknowledged=True)) in net.events
    assert client.options == options


def test_block_numbers_roll_over_to_zero() -> None:
    # 8-byte blocks: 70,000 blocks pass block 65535 and wrap, as tftpd-hpa and atftpd do.
    data = random.Random(2).randbytes(8 * 70_000 + 3)
    client, server = read_pair({"blksize": "8", "windowsize": "8"}, len(data))
    net = Network()
    assert simulate(client, server, data, net) == data
    sent = blocks_sent(net)
    wrap = sent.index(65535)
    assert sent[wrap + 1] == 0
    assert sent[wrap + 2] == 1
    assert len(sent) == 70_001


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 6000),
    blksize=st.sampled_from([8, 100, 512]),
    windowsize=st.sampled_from([1, 2, 5, 16]),
    seed=st.integers(0, 2**32 - 1),
    upload=st.booleans(),
)
def test_lossy_duplicating_reordering_network_delivers_exact_bytes(
    size: int, blksize: int, windowsize: int, seed: int, upload: bool
) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(size)
    options = {"blksize": str(blksize), "windowsize": str(windowsize)}
    net = Network(rng, loss=0.1, duplicate=0.05, reorder=0.1)
    pair = write_pair(options) if upload else read_pair(options, size)
    client, server = pair
    assert simulate(client, server, data, net) == data
    receiver, sender = (server, client) if upload else (client, server)
    assert receiver.state is State.COMPLETE
    # The one ambiguity TFTP cannot remove: when the final ACK and all its repeats during the
    # dally are lost, the sender times out although the receiver has everything.
    sender_name = "client" if upload else "server"
    last = [event for name, event in net.events if name == sender_name][-1]
    assert sender.state is State.COMPLETE or (
        isinstance(last, TransferFailed) and "timed out" in last.error.message and not last.by_peer
    )


# -- the sender ------------------------------------------------------------------------------


def lockstep_sender(data: bytes = b"x" * 2000, **kwargs: float) -> TftpSender:
    sender = TftpSender.server(TransferOptions(), {}, **kwargs)  # type: ignore[arg-type]
    feed_all(sender, data)
    return sender


def test_duplicate_ack_is_never_answered_in_lockstep() -> None:
    # RFC 1123 4.2.3.1: answering duplicates is the Sorcerer's Apprentice bug.
    sender = lockstep_sender()
    assert packets(sender.datagrams_to_send(0.0)) == [Data(1, b"x" * 512)]
    sender.receive_datagram(encode_ack(1), 0.01)
    assert [p.block for p in packets(sender.datagrams_to_send(0.01))] == [2]  # type: ignore[attr-defined]
    sender.receive_datagram(encode_ack(1), 0.02)  # the network duplicated ACK 1
    assert sender.datagrams_to_send(0.02) == []


def test_windowed_duplicate_ack_resends_once_per_window_position() -> None:
    sender = TftpSender.server(TransferOptions(blksize=8, windowsize=4), {})
    feed_all(sender, bytes(100))
    assert len(sender.datagrams_to_send(0.0)) == 4
    sender.receive_datagram(encode_ack(0), 0.01)  # RFC 7440: block 1 is missing
    assert [p.block for p in packets(sender.datagrams_to_send(0.01))] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    sender.receive_datagram(encode_ack(0), 0.02)
    assert sender.datagrams_to_send(0.02) == []


def test_an_ack_inside_the_window_restarts_after_it() -> None:
    sender = TftpSender.server(TransferOptions(blksize=8, windowsize=4), {})
    feed_all(sender, bytes(100))
    sender.datagrams_to_send(0.0)
    sender.receive_datagram(encode_ack(2), 0.01)  # 3 was lost, 4 discarded by the receiver
    assert [p.block for p in packets(sender.datagrams_to_send(0.01))] == [3, 4, 5, 6]  # type: ignore[attr-defined]
    sender.receive_datagram(encode_ack(1), 0.02)  # late and stale
    assert sender.datagrams_to_send(0.02) == []


def test_sender_retransmits_on_timeout_with_backoff_then_gives_up() -> None:
    sender = lockstep_sender(timeout=1.0, retries=3)
    sender.datagrams_to_send(0.0)
    times = []
    while not sender.closed:
        now = sender.get_timer()
        assert now is not None
        sender.handle_timer(now)
        sent = packets(sender.datagrams_to_send(now))
        times.append((now, sent))
    # RFC 6298 5.5: the timeout doubles (capped at 4x the initial one here).
    assert [t for t, _ in times] == [1.0, 3.0, 7.0, 11.0]
    assert all(sent == [Data(1, b"x" * 512)] for _, sent in times[:-1])
    error = times[-1][1]
    assert len(error) == 1
    assert isinstance(error[0], Error)
    assert error[0].code == ErrorCode.NOT_DEFINED
    failed = events(sender)
    assert len(failed) == 1
    assert isinstance(failed[0], TransferFailed)
    assert not failed[0].by_peer


def test_a_negotiated_timeout_is_used_as_it_is() -> None:
    sender = TftpSender.server(TransferOptions(timeout=3), {"timeout": "3"})
    feed_all(sender, b"abc")
    assert isinstance(packets(sender.datagrams_to_send(0.0))[0], OptionAck)
    assert sender.get_timer() == 3.0
    sender.handle_timer(3.0)
    assert isinstance(packets(sender.datagrams_to_send(3.0))[0], OptionAck)
    sender.receive_datagram(encode_ack(0), 3.5)
    assert packets(sender.datagrams_to_send(3.5)) == [Data(1, b"abc")]
    assert sender.get_timer() == 6.5
    sender.handle_timer(6.5)
    sender.datagrams_to_send(6.5)
    assert sender.get_timer() == 9.5  # no backoff on a negotiated timeout


def test_server_sends_nothing_but_its_oack_until_ack_0() -> None:
    sender = TftpSender.server(TransferOptions(blksize=1024), {"blksize": "1024"})
    feed_all(sender, bytes(3000))
    assert packets(sender.datagrams_to_send(0.0)) == [OptionAck({"blksize": "1024"})]
    sender.receive_datagram(encode_ack(5), 0.1)  # not ACK 0: ignored
    assert sender.datagrams_to_send(0.1) == []
    sender.receive_datagram(encode_ack(0), 0.2)
    assert packets(sender.datagrams_to_send(0.2)) == [Data(1, bytes(1024))]


def test_client_put_carries_on_when_the_server_ignores_options() -> None:
    sender = TftpSender.client("f", "octet", {"blksize": "1428"})
    feed_all(sender, bytes(600))
    assert packets(sender.datagrams_to_send(0.0)) == [Request(Opcode.WRQ, "f", "octet", {"blksize": "1428"})]
    sender.receive_datagram(encode_ack(0), 0.1)
    assert events(sender) == [Negotiated(TransferOptions(), acknowledged=False)]
    assert packets(sender.datagrams_to_send(0.1)) == [Data(1, bytes(512))]


def test_data_sent_to_a_sender_is_an_illegal_operation() -> None:
    sender = lockstep_sender()
    sender.datagrams_to_send(0.0)
    sender.receive_datagram(encode_data(1, b"?"), 0.1)
    assert sender.state is State.FAILED
    [error] = packets(sender.datagrams_to_send(0.1))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.ILLEGAL_OPERATION


def test_a_late_copy_of_the_request_is_ignored_mid_transfer() -> None:
    """A client's retransmitted WRQ that reaches the transfer port (through a relay) is not an
    error: the transfer carries on and the timer still covers our last packet."""
    sender = TftpSender.client("f", "octet", {})
    feed_all(sender, bytes(600))
    wrq = sender.datagrams_to_send(0.0)[0]
    sender.receive_datagram(encode_ack(0), 0.1)
    assert packets(sender.datagrams_to_send(0.1)) == [Data(1, bytes(512))]
    sender.receive_datagram(wrq, 0.2)
    assert sender.state is State.TRANSFERRING
    assert sender.datagrams_to_send(0.2) == []
    sender.receive_datagram(encode_ack(1), 0.3)
    assert packets(sender.datagrams_to_send(0.3)) == [Data(2, bytes(88))]


def test_an_error_from_the_peer_ends_the_transfer_unanswered() -> None:
    sender = lockstep_sender()
    sender.datagrams_to_send(0.0)
    sender.receive_datagram(encode(Error(ErrorCode.DISK_FULL, "full")), 0.1)
    assert events(sender) == [TransferFailed(Error(3, "full"), by_peer=True)]
    assert sender.datagrams_to_send(0.1) == []
    sender.receive_datagram(encode_ack(1), 0.2)  # after the end: ignored
    assert sender.datagrams_to_send(0.2) == []
    assert sender.get_timer() is None


def test_a_malformed_datagram_ends_the_transfer_with_error_4() -> None:
    sender = lockstep_sender()
    sender.datagrams_to_send(0.0)
    sender.receive_datagram(b"\x00\x09junk", 0.1)
    [error] = packets(sender.datagrams_to_send(0.1))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.ILLEGAL_OPERATION


def test_abort_sends_the_error_once() -> None:
    sender = lockstep_sender()
    sender.abort(ErrorCode.NOT_DEFINED, "shutting down")
    sender.abort(ErrorCode.NOT_DEFINED, "again")
    assert packets(sender.datagrams_to_send(0.0)) == [Error(0, "shutting down")]


def test_feeding_after_the_end_is_our_mistake() -> None:
    sender = lockstep_sender(b"")
    with pytest.raises(LocalProtocolError):
        sender.feed(b"more")


# -- the receiver ----------------------------------------------------------------------------


def test_final_ack_waits_for_commit_then_the_receiver_dallies() -> None:
    receiver = TftpReceiver.server(TransferOptions(), {}, timeout=2.0)
    assert packets(receiver.datagrams_to_send(0.0)) == [Ack(0)]
    receiver.receive_datagram(encode_data(1, b"x" * 512), 0.1)
    receiver.receive_datagram(encode_data(2, b"end"), 0.2)
    assert packets(receiver.datagrams_to_send(0.2)) == [Ack(1)]
    assert events(receiver) == [FinalBlockReceived(515)]
    assert receiver.take_data() == b"x" * 512 + b"end"
    receiver.receive_datagram(encode_data(2, b"end"), 0.3)  # the sender repeats; not stored yet
    assert receiver.datagrams_to_send(0.3) == []
    assert receiver.get_timer() is None
    receiver.commit(0.4)
    assert packets(receiver.datagrams_to_send(0.4)) == [Ack(2)]
    assert events(receiver) == [TransferComplete(515)]
    assert receiver.state is State.DALLYING
    assert receiver.get_timer() == 2.4
    receiver.receive_datagram(encode_data(2, b"end"), 1.0)  # our final ACK was lost
    assert packets(receiver.datagrams_to_send(1.0)) == [Ack(2)]
    receiver.handle_timer(2.4)
    assert receiver.closed
    assert receiver.state.name == "COMPLETE"


def test_commit_without_a_final_block_is_our_mistake() -> None:
    receiver = TftpReceiver.server(TransferOptions(), {})
    with pytest.raises(LocalProtocolError):
        receiver.commit(0.0)


def test_receiver_acks_early_on_a_gap_once_per_window() -> None:
    receiver = TftpReceiver.server(TransferOptions(blksize=8, windowsize=4), {"windowsize": "4"})
    receiver.datagrams_to_send(0.0)
    receiver.receive_datagram(encode_data(1, bytes(8)), 0.1)
    receiver.receive_datagram(encode_data(3, bytes(8)), 0.1)  # 2 is missing
    assert packets(receiver.datagrams_to_send(0.1)) == [Ack(1)]
    receiver.receive_datagram(encode_data(4, bytes(8)), 0.1)
    receiver.receive_datagram(encode_data(5, bytes(8)), 0.1)
    assert receiver.datagrams_to_send(0.1) == []
    assert receiver.take_data() == bytes(8)


def test_receiver_repeats_its_last_ack_on_timeout_backing_off() -> None:
    receiver = TftpReceiver.server(TransferOptions(), {}, timeout=1.5, retries=2)
    assert packets(receiver.datagrams_to_send(0.0)) == [Ack(0)]
    receiver.handle_timer(1.5)
    assert packets(receiver.datagrams_to_send(1.5)) == [Ack(0)]
    assert receiver.get_timer() == 4.5
    receiver.receive_datagram(encode_data(1, bytes(512)), 4.0)  # progress resets the backoff
    assert packets(receiver.datagrams_to_send(4.0)) == [Ack(1)]
    assert receiver.get_timer() == 5.5
    for now in (5.5, 8.5, 14.5):
        receiver.handle_timer(now)
        sent = packets(receiver.datagrams_to_send(now))
    [error] = sent
    assert isinstance(error, Error)
    assert receiver.state is State.FAILED


def test_oversized_data_is_illegal() -> None:
    receiver = TftpReceiver.server(TransferOptions(blksize=8), {"blksize": "8"})
    receiver.datagrams_to_send(0.0)
    receiver.receive_datagram(encode_data(1, bytes(9)), 0.1)
    [error] = packets(receiver.datagrams_to_send(0.1))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.ILLEGAL_OPERATION


def test_upload_beyond_the_size_limit_is_stopped_with_error_3() -> None:
    receiver = TftpReceiver.server(TransferOptions(blksize=8), {"blksize": "8"}, max_size=20)
    receiver.datagrams_to_send(0.0)
    for block in (1, 2):
        receiver.receive_datagram(encode_data(block, bytes(8)), 0.1)
    receiver.receive_datagram(encode_data(3, bytes(8)), 0.1)
    assert receiver.take_data() == bytes(16)
    datagrams = packets(receiver.datagrams_to_send(0.1))
    assert isinstance(datagrams[-1], Error)
    assert datagrams[-1].code == ErrorCode.DISK_FULL


def test_client_get_with_options_acks_the_oack_with_block_0() -> None:
    receiver = TftpReceiver.client("f", "octet", {"blksize": "1024", "tsize": "0"})
    assert packets(receiver.datagrams_to_send(0.0)) == [
        Request(Opcode.RRQ, "f", "octet", {"blksize": "1024", "tsize": "0"})
    ]
    receiver.receive_datagram(encode(OptionAck({"blksize": "1024", "tsize": "2000"})), 0.1)
    assert events(receiver) == [Negotiated(TransferOptions(blksize=1024, tsize=2000), acknowledged=True)]
    assert packets(receiver.datagrams_to_send(0.1)) == [Ack(0)]
    receiver.receive_datagram(encode(OptionAck({"blksize": "1024", "tsize": "2000"})), 0.5)
    assert packets(receiver.datagrams_to_send(0.5)) == [Ack(0)]  # our ACK 0 was lost


def test_client_get_carries_on_when_the_server_ignores_options() -> None:
    receiver = TftpReceiver.client("f", "octet", {"blksize": "1024"})
    receiver.datagrams_to_send(0.0)
    receiver.receive_datagram(encode_data(1, b"short"), 0.1)
    assert events(receiver) == [Negotiated(TransferOptions(), acknowledged=False), FinalBlockReceived(5)]


def test_client_refuses_an_oack_with_an_option_it_did_not_ask_for() -> None:
    receiver = TftpReceiver.client("f", "octet", {})
    receiver.datagrams_to_send(0.0)
    receiver.receive_datagram(encode(OptionAck({"windowsize": "8"})), 0.1)
    [error] = packets(receiver.datagrams_to_send(0.1))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.OPTION_REFUSED
    [failed] = events(receiver)
    assert isinstance(failed, TransferFailed)
    assert not failed.by_peer


def test_client_repeats_its_request_until_answered() -> None:
    receiver = TftpReceiver.client("f", "octet", {}, timeout=2.0)
    [rrq] = receiver.datagrams_to_send(0.0)
    assert receiver.get_timer() == 2.0
    receiver.handle_timer(2.0)
    assert receiver.datagrams_to_send(2.0) == [rrq]
    assert receiver.get_timer() == 6.0  # backing off


def test_a_server_error_to_the_request_is_reported() -> None:
    receiver = TftpReceiver.client("nope", "octet", {})
    receiver.datagrams_to_send(0.0)
    receiver.receive_datagram(encode(Error(ErrorCode.FILE_NOT_FOUND, "file not found")), 0.1)
    assert events(receiver) == [TransferFailed(Error(1, "file not found"), by_peer=True)]
    assert receiver.datagrams_to_send(0.1) == []


def test_a_very_short_configured_timeout_still_works() -> None:
    sender = lockstep_sender(timeout=0.01)
    sender.datagrams_to_send(0.0)
    assert sender.get_timer() == pytest.approx(0.01)
