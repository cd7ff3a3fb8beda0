"""The outbox the core keeps in ``SessionMemory``: stored sends wait there for their ack and
go out again, under the same packet id, on the next connection (issue 10)."""

from __future__ import annotations

import pytest

from mimc_rx.errors import OutboxFull
from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import Cmd
from mimc_rx.protocol.events import SendExpired, ServerAck
from mimc_rx.protocol.framing import parse_frame
from mimc_rx.protocol.memory import Outbox, RecentWindow, SessionMemory
from mimc_rx.testing import MemoryHub
from mimc_rx.testing.pair import SessionPair

from .test_client import sent_packet


def _sent_ids(pair: SessionPair) -> list[str]:
    """The packet ids of the P2P/P2T messages the client wrote, in order."""
    ids = []
    for frame in pair.c2s:
        if parse_frame(frame).header.cmd != Cmd.SECMSG:
            continue
        packet = sent_packet(frame)
        if isinstance(packet.body, codec.MIMCP2PMessage | codec.MIMCP2TMessage):
            assert parse_frame(frame).header.id == packet.packet_id  # 6.6: header id = packet id
            ids.append(packet.packet_id or "")
    return ids


def test_an_acked_stored_send_leaves_the_outbox() -> None:
    hub = MemoryHub()
    memory = SessionMemory()
    alice = hub.connect("alice", resource="res-a", memory=memory)
    hub.connect("bob")
    pid = alice.client.send_p2p("bob", b"hi", now=hub.clock.now)
    assert pid in memory.outbox
    hub.pump()
    assert [e.packet_id for e in alice.take_client_events() if isinstance(e, ServerAck)] == [pid]
    assert len(memory.outbox) == 0


def test_unacked_stored_sends_go_out_again_after_the_next_bind_in_order() -> None:
    hub = MemoryHub()
    memory = SessionMemory()
    first = hub.connect("alice", resource="res-a", memory=memory)
    hub.connect("bob")
    hub.create_topic(5, {"alice", "bob"})
    stored = [first.client.send_p2p("bob", f"m{i}", now=hub.clock.now) for i in range(3)]
    first.client.send_p2p("bob", b"unstored", is_store=False, now=hub.clock.now)
    group = first.client.send_p2t(5, b"group", now=hub.clock.now)
    first.client.receive_eof()  # the connection died before anything was written
    first.client.data_to_send()
    assert [e.packet_id for e in memory.outbox] == [*stored, group]

    second = hub.connect(
        "alice", resource="res-a", memory=memory
    )  # the next connection of the same user
    assert _sent_ids(second) == [*stored, group]  # the unstored one is not sent again
    acks = [e for e in second.take_client_events() if isinstance(e, ServerAck)]
    assert [a.packet_id for a in acks] == [*stored, group]
    assert len(memory.outbox) == 0


def test_a_repeated_ack_is_emitted_once() -> None:
    hub = MemoryHub()
    alice = hub.connect("alice")
    hub.connect("bob")
    pid = alice.client.send_p2p("bob", b"hi", now=hub.clock.now)
    hub.pump()
    assert len([e for e in alice.take_client_events() if isinstance(e, ServerAck)]) == 1
    alice.server.ack_packet(pid, sequence=9, timestamp=1)  # the network duplicated it
    hub.pump()
    assert [e for e in alice.take_client_events() if isinstance(e, ServerAck)] == []
    assert alice.client.memory.duplicate_acks == 1


def test_a_full_outbox_refuses_a_stored_send_and_sends_nothing() -> None:
    hub = MemoryHub()
    memory = SessionMemory(outbox_size=2)
    alice = hub.connect("alice", resource="res-a", memory=memory)
    stored = [alice.client.send_p2p("bob", b"x", now=hub.clock.now) for _ in range(2)]
    with pytest.raises(OutboxFull, match="2 stored sends") as full:
        alice.client.send_p2p("bob", b"x", now=hub.clock.now)
    assert (full.value.waiting, full.value.limit) == (2, 2)
    live = alice.client.send_p2p("bob", b"live", is_store=False, now=hub.clock.now)
    hub.pump()  # the acks make room
    assert _sent_ids(alice) == [*stored, live]  # the refused send never went out
    assert len(memory.outbox) == 0
    alice.client.send_p2p("bob", b"x", now=hub.clock.now)


def test_an_outbox_entry_older_than_its_age_is_given_up() -> None:
    hub = MemoryHub()
    memory = SessionMemory(outbox_age=60.0)
    first = hub.connect("alice", resource="res-a", memory=memory)
    old = first.client.send_p2p("bob", b"old", now=hub.clock.now)
    hub.clock.advance(50)
    fresh = first.client.send_p2p("bob", b"fresh", now=hub.clock.now)
    first.client.receive_eof()
    first.client.data_to_send()
    hub.clock.advance(20)  # old is 70 s old, fresh 20 s
    second = hub.connect("alice", resource="res-a", memory=memory)
    assert _sent_ids(second) == [fresh]
    expired = [e for e in second.take_client_events() if isinstance(e, SendExpired)]
    assert expired == [SendExpired(packet_id=old, age=70.0)]


def test_outbox_and_window_bounds() -> None:
    with pytest.raises(ValueError, match="outbox"):
        Outbox(0)
    window: RecentWindow[str] = RecentWindow(2)
    assert [window.add(k) for k in ("a", "b", "a", "c", "a")] == [True, True, False, True, True]
