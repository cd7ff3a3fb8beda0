"""Client and server sessions together, in memory (``mimc_rx.testing``): the flows of
docs/protocol.md 6 end to end, with the frames in between looked at too."""

from __future__ import annotations

import dataclasses

import pytest

from mimc_rx.protocol import codec
from mimc_rx.protocol.client import ClientSession, ClientState
from mimc_rx.protocol.events import (
    BindRequested,
    DeliveryKind,
    Kicked,
    P2PMessage,
    P2PReceived,
    P2TMessage,
    Pinged,
    PullNotification,
    PullRequested,
    SequenceAcked,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCPinged,
    UCQuitResult,
    UCSequenceAcked,
    UnbindRequested,
)
from mimc_rx.protocol.framing import parse_frame
from mimc_rx.protocol.server import ServerSession, ServerState
from mimc_rx.testing import MemoryHub, SessionPair, token_answer


def cmds(frames: list[bytes]) -> list[str | None]:
    return [parse_frame(f).header.cmd for f in frames]


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub()


def test_conn_and_bind(hub: MemoryHub) -> None:
    alice = hub.connect("alice", login=False)
    alice.client.login(hub.token_for(hub.accounts["alice"]), now=0.0)
    alice.step()  # CONN out, challenge back
    assert cmds(alice.c2s) == ["CONN"]
    assert cmds(alice.s2c) == ["CONN"]
    assert alice.client.state is ClientState.BINDING
    hub.pump()
    assert cmds(alice.c2s) == ["CONN", "BIND"]
    assert cmds(alice.s2c) == ["CONN", "BIND"]
    assert alice.take_client_events() == [StatusChange(online=True)]
    account = hub.accounts["alice"]
    assert alice.take_server_events() == [
        BindRequested(uuid=account.uuid, resource="res-alice-1", token=account.token, chid=9)
    ]
    assert alice.server.is_bound
    assert alice.client.is_logged_in
    assert alice.client.uuid == alice.server.uuid == account.uuid


def test_bind_with_a_wrong_key_fails_with_the_error_fields(hub: MemoryHub) -> None:
    account = hub.add_account("mallory")
    answer = token_answer(account)
    answer["data"]["miUserSecurityKey"] = "V1JPTkdLRVk="  # not the key the server holds
    mallory = hub.connect("mallory", answer=answer)
    assert mallory.take_client_events() == [
        StatusChange(
            online=False, err_type="auth", err_reason="invalid-sig", err_desc="signature mismatch"
        )
    ]
    assert mallory.client.state is ClientState.CLOSED
    assert mallory.closed
    assert mallory.server.state is ServerState.CLOSED  # saw EOF after waiting for a new BIND


def test_bind_with_an_unknown_token_is_rejected(hub: MemoryHub) -> None:
    account = hub.add_account("trudy")
    answer = token_answer(account)
    answer["data"]["token"] = "FORGED"
    trudy = hub.connect("trudy", answer=answer)
    [status] = trudy.take_client_events()
    assert status == StatusChange(
        online=False, err_type="auto", err_reason="invalid-token", err_desc="unknown token"
    )


def test_p2p_send_ack_delivery_and_sequence_ack(hub: MemoryHub) -> None:
    alice, bob = hub.connect("alice"), hub.connect("bob")
    for pair in (alice, bob):
        pair.take_client_events()
        pair.take_server_events()
    packet_id = alice.client.send_p2p("bob", "hello ✓", biz_type="TEXT", now=hub.clock.now)
    hub.pump()
    [received] = alice.take_server_events()
    assert isinstance(received, P2PReceived)
    assert (received.packet_id, received.to_account, received.sender.app_account) == (
        packet_id,
        "bob",
        "alice",
    )
    [ack] = alice.take_client_events()
    assert isinstance(ack, ServerAck)
    assert ack.packet_id == packet_id
    assert ack.ok
    [message] = bob.take_client_events()
    assert isinstance(message, P2PMessage)
    assert (message.packet_id, message.sequence, message.text) == (
        packet_id,
        ack.sequence,
        "hello ✓",
    )
    assert (message.from_account, message.from_resource, message.to_account) == (
        "alice",
        "res-alice-1",
        "bob",
    )
    assert bob.take_server_events() == [SequenceAcked(sequence=ack.sequence)]
    # on the wire: s2c SECMSG carries cipher=1, c2s does not (docs/protocol.md 5)
    assert {
        parse_frame(f).header.cipher for f in bob.s2c if parse_frame(f).header.cmd == "SECMSG"
    } == {1}
    assert {parse_frame(f).header.cipher for f in alice.c2s} == {None}


def test_p2t_reaches_the_other_members(hub: MemoryHub) -> None:
    alice, bob, carol = hub.connect("alice"), hub.connect("bob"), hub.connect("carol")
    hub.create_topic(30000000000000001, {"alice", "bob", "carol"})
    for pair in (alice, bob, carol):
        pair.take_client_events()
    packet_id = alice.client.send_p2t(30000000000000001, b"hi group", now=0.0)
    hub.pump()
    assert [type(e) for e in alice.take_client_events()] == [ServerAck]
    for pair in (bob, carol):
        [message] = pair.take_client_events()
        assert isinstance(message, P2TMessage)
        assert (message.packet_id, message.topic_id, message.payload) == (
            packet_id,
            30000000000000001,
            b"hi group",
        )


def test_a_duplicate_delivery_is_acked_but_dropped(hub: MemoryHub) -> None:
    alice, bob = hub.connect("alice"), hub.connect("bob")
    alice.client.send_p2p("bob", b"once", now=0.0)
    hub.pump()
    bob.take_client_events()
    bob.take_server_events()
    [stored] = hub.stored["bob"]
    bob.server.deliver([stored], max_sequence=stored.sequence)  # the server re-sends it
    hub.pump()
    assert bob.take_client_events() == []
    assert bob.take_server_events() == [SequenceAcked(sequence=stored.sequence)]
    fresh = dataclasses.replace(stored, sequence=stored.sequence + 100)
    bob.server.deliver([stored, fresh], max_sequence=fresh.sequence)
    hub.pump()
    assert [e.sequence for e in bob.take_client_events()] == [fresh.sequence]  # type: ignore[union-attr]


def test_pull_notification_first_and_repeat(hub: MemoryHub) -> None:
    bob = hub.connect("bob")
    bob.take_client_events()
    bob.take_server_events()
    hub.notify_backlog("bob", 5, 9)
    assert bob.take_client_events() == [PullNotification(min_sequence=5, max_sequence=9)]
    assert bob.take_server_events() == [SequenceAcked(sequence=9)]
    hub.notify_backlog("bob", 5, 12)  # same minSequence: silent ack of the remembered max
    assert bob.take_client_events() == []
    assert bob.take_server_events() == [SequenceAcked(sequence=9)]
    hub.notify_backlog("bob", 10, 12)
    assert bob.take_client_events() == [PullNotification(min_sequence=10, max_sequence=12)]


def test_pull_replays_stored_messages(hub: MemoryHub) -> None:
    alice = hub.connect("alice")
    hub.add_account("bob")
    alice.client.send_p2p("bob", b"offline-1", now=0.0)
    alice.client.send_p2p("bob", b"offline-2", now=0.0)
    hub.pump()
    bob = hub.connect("bob")  # logs in after the messages were stored
    bob.take_client_events()
    packet_id = bob.client.pull(now=0.0)
    hub.pump()
    assert PullRequested(packet_id=packet_id) in bob.take_server_events()
    texts = [e.payload for e in bob.take_client_events() if isinstance(e, P2PMessage)]
    assert texts == [b"offline-1", b"offline-2"]


def test_logout_closes_from_the_server_side(hub: MemoryHub) -> None:
    bob = hub.connect("bob")
    bob.take_server_events()
    bob.client.logout(now=0.0)
    hub.pump()
    assert bob.take_server_events() == [UnbindRequested()]
    assert cmds(bob.c2s)[-1] == "UBND"
    assert bob.closed
    assert bob.client.state is ClientState.CLOSED
    assert hub.bound("bob") == []


def test_kick(hub: MemoryHub) -> None:
    alice = hub.connect("alice")
    alice.take_client_events()
    alice.server.kick("kick", "same-resource-login", "logged in elsewhere")
    hub.pump()
    assert alice.take_client_events() == [
        Kicked(err_type="kick", err_reason="same-resource-login", err_desc="logged in elsewhere")
    ]
    assert alice.closed
    assert alice.client.state is ClientState.CLOSED


def test_unlimited_group_join_message_quit_dismiss(hub: MemoryHub) -> None:
    alice, bob = hub.connect("alice"), hub.connect("bob")
    for pair in (alice, bob):
        pair.take_client_events()
        pair.take_server_events()
    topic = 40000000000000001
    bob.client.join_uc(topic, now=0.0)
    alice.client.join_uc(topic, now=0.0)
    hub.pump()
    assert bob.take_client_events() == [UCJoinResult(topic_id=topic, code=0, message="success")]
    assert alice.take_client_events() == [UCJoinResult(topic_id=topic, code=0, message="success")]
    returned = alice.client.send_uc(topic, "uc hello", biz_type="UCTEXT", now=0.0)
    hub.pump()
    [message] = bob.take_client_events()
    assert isinstance(message, UCMessage)
    assert message.text == "uc hello"
    assert message.packet_id != returned  # 10.9: receivers see the inner message id
    assert UCSequenceAcked(topic_id=topic, sequence=message.sequence) in bob.take_server_events()
    # keep-alive: UC PING after 10 s lists the joined topic, the server answers PONG
    hub.advance(10.0)
    assert UCPinged(topic_ids=(topic,)) in bob.take_server_events()
    bob.client.quit_uc(topic, now=hub.clock.now)
    hub.pump()
    assert bob.take_client_events() == [UCQuitResult(topic_id=topic, code=0, message="success")]
    assert bob.client.uc_topics == ()
    hub.dismiss_uc(topic)
    assert alice.take_client_events() == [UCDismissed(topic_id=topic)]
    assert alice.client.uc_topics == ()
    assert bob.take_client_events() == []  # left before the dismissal


def test_keepalive_ping_reaches_the_server(hub: MemoryHub) -> None:
    bob = hub.connect("bob", ping_interval=30.0)
    bob.take_server_events()
    hub.advance(29.0)
    assert Pinged() not in bob.take_server_events()
    hub.advance(1.0)
    assert Pinged() in bob.take_server_events()
    hub.advance(29.0)
    assert Pinged() not in bob.take_server_events()
    hub.advance(1.0)  # every 30 s, counted from the previous PING
    assert Pinged() in bob.take_server_events()


def test_a_bare_session_pair() -> None:
    """SessionPair without the hub: the business logic is a plain callback."""
    answer = {
        "code": 200,
        "message": "success",
        "data": {
            "appId": "7",
            "appPackage": "pkg",
            "appAccount": "solo",
            "miChid": 9,
            "miUserId": "42",
            "miUserSecurityKey": "S0VZ",
            "token": "T",
        },
    }

    def business(pair: SessionPair, event: object) -> None:
        if isinstance(event, BindRequested):
            pair.server.accept_bind("S0VZ", app_id=7, package="pkg")
        elif isinstance(event, P2PReceived):
            pair.server.ack_packet(event.packet_id, sequence=1, timestamp=2, error_msg="no")

    pair = SessionPair(ClientSession(7, "solo", "r"), ServerSession(), on_server_event=business)
    pair.client.login(answer, now=0.0)
    pair.pump()
    packet_id = pair.client.send_p2p("x", b"y", now=0.0)
    pair.pump()
    status, ack = pair.take_client_events()
    assert status == StatusChange(online=True)
    assert ack == ServerAck(packet_id=packet_id, sequence=1, timestamp=2, err_msg="no")
    assert isinstance(ack, ServerAck)
    assert not ack.ok
    assert codec.decode_header(b"") == codec.Header()
    assert DeliveryKind.P2P.value == "p2p"
