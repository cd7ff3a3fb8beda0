"""The rules the core owns across connections: ``SessionMemory`` (dedup window, joined
unlimited groups), auto-pull, and the payload check of every send (STYLE.md 9)."""

from __future__ import annotations

import pytest

from mimc_rx.protocol import codec, codec_uc
from mimc_rx.protocol.client import P2P_TEXT_LIMIT, check_payload
from mimc_rx.protocol.codec import Cmd
from mimc_rx.protocol.events import P2PMessage, PullNotification
from mimc_rx.protocol.framing import parse_frame
from mimc_rx.protocol.memory import SessionMemory
from mimc_rx.testing import MemoryHub

from .test_client import bound_client, sent_packet
from .vectors import frame_bytes


def test_a_redelivery_on_the_next_session_is_acked_but_not_emitted() -> None:
    memory = SessionMemory(dedup_window=8)
    first = bound_client(memory=memory)
    first.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    assert [type(e) for e in first.events_received()] == [P2PMessage]
    second = bound_client(memory=memory)  # the next connection of the same user
    second.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
    assert second.events_received() == []
    [ack] = second.data_to_send()
    assert isinstance(sent_packet(ack).body, codec.MIMCSequenceAck)  # 6.8: acked all the same
    assert memory.duplicates == 1


def test_a_session_without_memory_forgets_with_the_connection() -> None:
    for _ in range(2):
        client = bound_client()
        client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=1.0)
        assert [type(e) for e in client.events_received()] == [P2PMessage]


def test_memory_and_dedup_window_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        bound_client(memory=SessionMemory(), dedup_window=3)


def test_a_new_session_rejoins_the_remembered_unlimited_groups() -> None:
    hub = MemoryHub()
    memory = SessionMemory()
    memory.remember_uc_topics([42, 7])
    pair = hub.connect("bob", memory=memory)  # logs in; BIND succeeded: the joins go out
    joins = [
        packet.body.body
        for frame in pair.c2s
        if parse_frame(frame).header.cmd == Cmd.SECMSG
        and isinstance(packet := sent_packet(frame), codec.MIMCPacket)
        and isinstance(packet.body, codec_uc.UCPacket)
    ]
    assert all(isinstance(j, codec_uc.UCJoin) for j in joins)
    assert [j.group.topic_id for j in joins] == [7, 42]  # type: ignore[union-attr]
    assert pair.client.uc_topics == (42, 7)


def test_logout_forgets_the_unlimited_groups() -> None:
    memory = SessionMemory()
    memory.remember_uc_topics([42])
    pair = MemoryHub().connect("bob", memory=memory)
    pair.client.logout(now=2.0)
    assert memory.uc_topics == ()


def test_auto_pull_answers_a_pull_notification_and_pulls_until_the_range_came() -> None:
    client = bound_client(auto_pull=True)
    client.receive_data(frame_bytes("s2c_secmsg_compound_exceed_limit", 0), now=1.0)
    [note] = client.events_received()
    assert isinstance(note, PullNotification)
    # 6.10/6.11: no ack of the range (the PULL would find nothing), a PULL instead.
    [pull] = client.data_to_send()
    assert isinstance(sent_packet(pull).body, codec.PullMessageRequest)
    # A pulled page that stops short of the notified maxSequence: ack it, pull the next page.
    client.receive_data(frame_bytes("s2c_secmsg_compound_p2p", 0), now=2.0)
    client.events_received()
    bodies = [sent_packet(f).body for f in client.data_to_send()]
    assert [type(b) for b in bodies] == [codec.MIMCSequenceAck, codec.PullMessageRequest]


def test_without_auto_pull_the_notice_is_acked_and_nothing_is_pulled() -> None:
    client = bound_client()
    client.receive_data(frame_bytes("s2c_secmsg_compound_exceed_limit", 0), now=1.0)
    bodies = [sent_packet(f).body for f in client.data_to_send()]
    assert [type(b) for b in bodies] == [codec.MIMCSequenceAck]


def test_check_payload_is_the_one_limit_check() -> None:
    assert check_payload("é😀", P2P_TEXT_LIMIT) == "é😀".encode()
    assert check_payload(memoryview(b"ab"), P2P_TEXT_LIMIT) == b"ab"
    with pytest.raises(TypeError):
        check_payload(5, P2P_TEXT_LIMIT)  # type: ignore[arg-type]
