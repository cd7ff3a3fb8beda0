"""The websocket side against a running server: login, messages, groups, kick, garbage.

Clients are the protocol core's ClientSession over real websockets connections (tests/server/
wire.py); raw frames are used where a well-behaved client cannot misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import Cmd, Header
from mimc_rx.protocol.events import (
    Kicked,
    P2PMessage,
    P2TMessage,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from mimc_rx.protocol.framing import Frame, serialize_frame
from mimc_rx.server import LocalServer

from .conftest import APP, TIMEOUT, FakeClock, eventually, login_http, make_server
from .wire import WireClient

Connect = Callable[..., Awaitable[WireClient]]


@pytest.fixture
async def connect(server: LocalServer, http: httpx.AsyncClient) -> AsyncIterator[Connect]:
    """``await connect("alice", resource="r1", **session_kw)``: a logged-in client."""
    clients: list[WireClient] = []

    async def make(account: str, resource: str = "r1", **kw: Any) -> WireClient:
        client = WireClient(server.ws_url, account, resource, **kw)
        clients.append(client)
        await client.login((await login_http(http, account)).answer)
        return client

    yield make
    for client in clients:
        await client.close()


async def _group(http: httpx.AsyncClient, owner: str, members: str) -> int:
    token = (await login_http(http, owner)).token
    answer = (
        await http.post(
            f"/api/topic/{APP.app_id}",
            headers={"token": token},
            json={"topicName": "g", "accounts": members},
        )
    ).json()
    return int(answer["data"]["topicInfo"]["topicId"])


# ---------------------------------------------------------------------------- P2P and sequences


async def test_p2p_ack_delivery_and_sequence_ack(server: LocalServer, connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    pid = alice.session.send_p2p("bob", "hi 😀", biz_type="TEXT", now=alice.now())
    await alice.flush()
    ack = await alice.next(ServerAck)
    assert (ack.packet_id, ack.err_msg) == (pid, "")
    assert ack.sequence > 0
    assert ack.timestamp == server.config.now_ms()
    message = await bob.next(P2PMessage)
    assert message.packet_id == pid
    assert (message.from_account, message.from_resource, message.to_account) == (
        "alice",
        "r1",
        "bob",
    )
    assert message.text == "hi 😀"
    assert message.biz_type == "TEXT"
    # bob's client acked the COMPOUND: the server moved bob's cursor to that sequence.
    assert server.hub is not None
    storage, bob_uuid = server.hub.storage, bob.session.uuid
    assert bob_uuid is not None

    async def acked() -> bool:
        assert bob_uuid is not None
        return await storage.cursor(bob_uuid, "r1") == message.sequence

    await eventually(acked)
    assert alice.of(P2PMessage) == []


async def test_sequences_increase_and_are_unique_across_p2p_and_p2t(
    http: httpx.AsyncClient, connect: Connect
) -> None:
    topic = await _group(http, "alice", "bob")
    alice, bob = await connect("alice"), await connect("bob")
    for i in range(6):
        if i % 2:
            alice.session.send_p2t(topic, f"g{i}", now=alice.now())
        else:
            alice.session.send_p2p("bob", f"p{i}", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck, 6)
    await bob.wait(lambda: len(bob.of(P2PMessage)) + len(bob.of(P2TMessage)) == 6)
    got = sorted(
        [(m.sequence, m.text) for m in bob.of(P2PMessage)]
        + [(m.sequence, m.text) for m in bob.of(P2TMessage)]
    )
    assert [text for _, text in got] == ["p0", "g1", "p2", "g3", "p4", "g5"]
    assert len({s for s, _ in got}) == 6
    acks = [a.sequence for a in alice.of(ServerAck)]
    assert acks == sorted(set(acks))
    assert all(a.ok for a in alice.of(ServerAck))


async def test_every_resource_gets_it_but_the_sending_session(
    http: httpx.AsyncClient, connect: Connect
) -> None:
    topic = await _group(http, "alice", "bob")
    alice1, alice2 = await connect("alice", "a1"), await connect("alice", "a2")
    bob1, bob2 = await connect("bob", "b1"), await connect("bob", "b2")
    alice1.session.send_p2p("bob", "direct", now=alice1.now())
    alice1.session.send_p2t(topic, "group", now=alice1.now())
    await alice1.flush()
    for bob in (bob1, bob2):
        assert (await bob.next(P2PMessage)).text == "direct"
        assert (await bob.next(P2TMessage)).text == "group"
    # The sender's other resource sees the group message, under the sender's own sequence.
    own = await alice2.next(P2TMessage)
    acks = await alice1.next(ServerAck, 2)
    assert own.sequence == acks.sequence
    await alice1.barrier()  # a wrong extra delivery would have come before this
    await alice2.barrier()
    assert alice2.of(P2PMessage) == []
    assert alice1.of(P2TMessage) == []


async def test_large_payload_accepted(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    payload = bytes(range(256)) * (15360 * 3 // 256)
    alice.session.send_p2p("bob", payload, now=alice.now())
    await alice.flush()
    assert (await alice.next(ServerAck)).ok
    assert (await bob.next(P2PMessage)).payload == payload


async def test_oversized_payload_refused(db_path: Path, clock: FakeClock) -> None:
    async with (
        make_server(db_path, clock, max_payload=1000) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        bob = WireClient(server.ws_url, "bob")
        alice = WireClient(server.ws_url, "alice")
        await bob.login((await login_http(http, "bob")).answer)
        await alice.login((await login_http(http, "alice")).answer)
        alice.session.send_p2p("bob", b"x" * 1001, now=alice.now())
        alice.session.send_p2p("bob", b"y" * 1000, now=alice.now())
        await alice.flush()
        refused, accepted = await alice.next(ServerAck), await alice.next(ServerAck, 2)
        assert refused.err_msg == "payload too large"
        assert refused.sequence == 0
        assert accepted.ok
        message = await bob.next(P2PMessage)
        assert message.payload == b"y" * 1000
        assert len(bob.of(P2PMessage)) == 1
        await alice.close()
        await bob.close()


# ---------------------------------------------------------------------------- BIND failures, kick


async def test_wrong_signature(server: LocalServer, http: httpx.AsyncClient) -> None:
    answer = (await login_http(http, "alice")).answer
    answer["data"]["miUserSecurityKey"] = "V1JPTkdLRVlXUk9OR0tFWQ=="
    client = WireClient(server.ws_url, "alice")
    status = await client.login(answer, expect_ok=False)
    assert status == StatusChange(
        online=False, err_type="auth", err_reason="invalid-sig", err_desc="signature mismatch"
    )
    await client.close()


async def test_expired_token(
    server: LocalServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answer = (await login_http(http, "alice")).answer
    clock.advance(server.config.token_ttl + 1)
    client = WireClient(server.ws_url, "alice")
    status = await client.login(answer, expect_ok=False)
    assert (status.online, status.err_type, status.err_reason) == (
        False,
        "token-expired",
        "token-expired",
    )
    await client.close()


async def test_unknown_token_and_token_of_another_user(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    answer = (await login_http(http, "alice")).answer
    answer["data"]["token"] = "not-a-token"
    client = WireClient(server.ws_url, "alice")
    status = await client.login(answer, expect_ok=False)
    assert (status.online, status.err_reason) == (False, "invalid-token")
    await client.close()
    # bob presents alice's token with his own uuid and key: the token is not his.
    alice = (await login_http(http, "alice")).answer
    bob = (await login_http(http, "bob")).answer
    bob["data"]["token"] = alice["data"]["token"]
    client = WireClient(server.ws_url, "bob")
    status = await client.login(bob, expect_ok=False)
    assert (status.online, status.err_reason) == (False, "invalid-token")
    await client.close()


async def test_second_login_of_same_resource_kicks_the_first(connect: Connect) -> None:
    first = await connect("alice", "r1")
    other_resource = await connect("alice", "r2")
    second = await connect("alice", "r1")
    kicked = await first.next(Kicked)
    assert kicked.err_reason == "same-resource-login"
    await first.wait_closed()
    bob = await connect("bob")
    bob.session.send_p2p("alice", "still there?", now=bob.now())
    await bob.flush()
    assert (await second.next(P2PMessage)).text == "still there?"
    assert (await other_resource.next(P2PMessage)).text == "still there?"
    assert other_resource.of(Kicked) == []
    assert not other_resource.closed.is_set()


async def test_logout_closes(connect: Connect) -> None:
    alice = await connect("alice")
    alice.session.logout(now=alice.now())
    await alice.flush()
    assert await alice.wait_closed() == 1000  # UBND: a normal close


async def test_send_then_logout_in_one_burst(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    alice.session.send_p2p("bob", "bye", now=alice.now())
    alice.session.logout(now=alice.now())
    await alice.flush()  # both frames in one burst: the ack finds a closed session
    await alice.wait_closed()
    assert (await bob.next(P2PMessage)).text == "bye"
    bob.session.send_p2p("bob", "note to self", now=bob.now())
    await bob.flush()
    assert (await bob.next(ServerAck)).ok
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---------------------------------------------------------------------------- offline delivery


async def test_offline_delivery_after_restart(db_path: Path, clock: FakeClock) -> None:
    async with (
        make_server(db_path, clock) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        alice = WireClient(server.ws_url, "alice")
        await alice.login((await login_http(http, "alice")).answer)
        alice.session.send_p2p("bob", "stored", now=alice.now())
        alice.session.send_p2p("bob", "volatile", is_store=False, now=alice.now())
        await alice.flush()
        acks = [await alice.next(ServerAck), await alice.next(ServerAck, 2)]
        assert all(a.ok for a in acks)
        await alice.close()
    async with (
        make_server(db_path, clock) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        bob = WireClient(server.ws_url, "bob")
        await bob.login((await login_http(http, "bob")).answer)
        message = await bob.next(P2PMessage)
        assert (message.text, message.from_account, message.packet_id) == (
            "stored",
            "alice",
            acks[0].packet_id,
        )
        await bob.barrier()
        assert [m.text for m in bob.of(P2PMessage)] == ["stored"]
        await bob.close()


async def test_unacked_delivery_is_sent_again_at_next_login(
    server: LocalServer, http: httpx.AsyncClient, connect: Connect
) -> None:
    alice = await connect("alice")
    bob = WireClient(server.ws_url, "bob")
    await bob.login((await login_http(http, "bob")).answer)
    bob.flush = _mute  # type: ignore[method-assign]  # bob receives but never acks
    alice.session.send_p2p("bob", "once", now=alice.now())
    await alice.flush()
    first = await bob.next(P2PMessage)
    await bob.close()
    again = WireClient(server.ws_url, "bob")
    await again.login((await login_http(http, "bob")).answer)
    redelivered = await again.next(P2PMessage)
    assert (redelivered.sequence, redelivered.text) == (first.sequence, "once")
    await again.close()
    # Acked this time: a third login gets nothing.
    third = WireClient(server.ws_url, "bob")
    await third.login((await login_http(http, "bob")).answer)
    await third.barrier()
    assert third.of(P2PMessage) == []
    await third.close()


async def _mute() -> None:
    return None


async def test_pull_notification_then_pull(
    server: LocalServer, http: httpx.AsyncClient, connect: Connect
) -> None:
    # The fixture's backlog limit is 5.
    alice = await connect("alice")
    for i in range(7):
        alice.session.send_p2p("bob", f"m{i}", now=alice.now())
    await alice.flush()
    acks = await alice.next(ServerAck, 7)
    assert acks.ok
    bob = WireClient(server.ws_url, "bob", ack_pull_notifications=False)
    await bob.login((await login_http(http, "bob")).answer)
    note = await bob.next(PullNotification)
    assert note.min_sequence < note.max_sequence
    await bob.barrier()
    assert bob.of(P2PMessage) == []  # too many: announced, not pushed
    bob.session.pull(now=bob.now())
    await bob.flush()
    await bob.wait(lambda: len(bob.of(P2PMessage)) == 7)
    messages = bob.of(P2PMessage)
    assert [m.text for m in messages] == [f"m{i}" for i in range(7)]
    assert (messages[0].sequence, messages[-1].sequence) == (note.min_sequence, note.max_sequence)
    await bob.close()


async def test_small_backlog_is_pushed_at_login(
    server: LocalServer, http: httpx.AsyncClient, connect: Connect
) -> None:
    alice = await connect("alice")
    for i in range(5):
        alice.session.send_p2p("bob", f"m{i}", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck, 5)
    bob = await connect("bob")
    await bob.wait(lambda: len(bob.of(P2PMessage)) == 5)
    assert bob.of(PullNotification) == []


# ---------------------------------------------------------------------------- groups


async def test_group_permissions(http: httpx.AsyncClient, connect: Connect) -> None:
    topic = await _group(http, "alice", "bob")
    alice, bob, carol = await connect("alice"), await connect("bob"), await connect("carol")
    carol.session.send_p2t(topic, "let me in", now=carol.now())
    carol.session.send_p2t(123456789, "nobody home", now=carol.now())
    await carol.flush()
    assert (await carol.next(ServerAck)).err_msg == "not a member of the topic"
    assert (await carol.next(ServerAck, 2)).err_msg == "topic not found"
    bob.session.send_p2t(topic, "members only", now=bob.now())
    await bob.flush()
    assert (await bob.next(ServerAck)).ok
    received = await alice.next(P2TMessage)
    assert (received.text, received.topic_id, received.from_account) == (
        "members only",
        topic,
        "bob",
    )
    await alice.barrier()
    await carol.barrier()
    assert [m.text for m in alice.of(P2TMessage)] == ["members only"]
    assert carol.of(P2TMessage) == []


async def test_unlimited_group_flows(
    server: LocalServer, http: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await login_http(http, "alice")
    created = (
        await http.post("/api/uctopic", headers={"token": owner.token}, json={"topicName": "room"})
    ).json()
    topic = int(created["data"]["topicId"])
    alice, bob, carol = await connect("alice"), await connect("bob"), await connect("carol")
    bob.session.join_uc(topic, now=bob.now())
    bob.session.join_uc(987654321, now=bob.now())
    await bob.flush()
    assert await bob.next(UCJoinResult) == UCJoinResult(topic_id=topic, code=0, message="success")
    assert (await bob.next(UCJoinResult, 2)).code != 0
    carol.session.send_uc(topic, "not joined", now=carol.now())
    for text in ("one", "two"):
        alice.session.send_uc(topic, text, now=alice.now())
    await carol.flush()
    await alice.flush()
    second = await bob.next(UCMessage, 2)
    first = bob.of(UCMessage)[0]
    assert [first.text, second.text] == ["one", "two"]
    assert first.sequence < second.sequence
    assert (first.from_account, first.topic_id) == ("alice", topic)
    bob.session.quit_uc(topic, now=bob.now())
    await bob.flush()
    assert (await bob.next(UCQuitResult)).ok
    members = (
        await http.get(
            "/api/uctopic/userlist", headers={"token": owner.token, "topicId": str(topic)}
        )
    ).json()
    assert [m["appAccount"] for m in members["data"]["members"]] == ["alice"]
    await http.delete("/api/uctopic", headers={"token": owner.token, "topicId": str(topic)})
    assert await alice.next(UCDismissed) == UCDismissed(topic_id=topic)
    await bob.barrier()
    await alice.barrier()
    assert [m.text for m in bob.of(UCMessage)] == ["one", "two"]
    assert alice.of(UCMessage) == []  # the sender's own session is skipped


async def test_a_uc_join_behind_a_slow_login_counts_from_its_join_resp(
    server: LocalServer, http: httpx.AsyncClient, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JOIN waits behind its connection's earlier reads (the login's, after the BIND answer):
    the membership counts from its JOIN_RESP, sent once it is committed, and a member's message
    sent after that reaches the joiner. A message the server took before it may not, so a test
    of UC delivery waits for the JOIN_RESP before sending (the flaky test_hostile_input test
    sent at once and lost its message whenever PostgreSQL made bob's login read slower)."""
    owner = await login_http(http, "alice")
    room = {"topicName": "r"}
    created = await http.post("/api/uctopic", headers={"token": owner.token}, json=room)
    topic = int(created.json()["data"]["topicId"])
    bob_uuid = (await login_http(http, "bob")).uuid
    assert server.hub is not None
    broker = server.hub.broker
    claim, held = broker.claim, asyncio.Event()

    async def slow_claim(uuid: int, resource: str) -> str | None:
        if uuid == bob_uuid:  # the last step of bob's login read
            await held.wait()
        return await claim(uuid, resource)

    monkeypatch.setattr(broker, "claim", slow_claim)
    alice, bob = await connect("alice"), await connect("bob")
    bob.session.join_uc(topic, now=bob.now())
    await bob.flush()
    alice.session.send_uc(topic, "before", now=alice.now())
    await alice.flush()
    await alice.barrier()  # "before" is written
    await bob.barrier()  # and the JOIN, read after the login, is not answered yet
    assert bob.of(UCJoinResult) == []
    held.set()
    assert (await bob.next(UCJoinResult)).ok
    alice.session.send_uc(topic, "after", now=alice.now())
    await alice.flush()
    await bob.wait(lambda: bob.of(UCMessage))
    await bob.barrier()
    assert [m.text for m in bob.of(UCMessage)] == ["after"]


# ---------------------------------------------------------------------------- robustness


def _frame(cmd: str, payload: bytes = b"", **header: Any) -> bytes:
    return serialize_frame(Frame(header=Header(cmd=cmd, id="raw1", **header), payload=payload))


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00" * 3,
        b"garbage that is long enough to look like a header" * 3,
        b"\xc2\xfe\x00\x04\x00\x03\x00\x02\xff\xff\x00\x00\x00\x00",
        _frame(Cmd.CONN)[:-1] + b"\x00",  # bad checksum
        _frame(Cmd.SECMSG, b"\x01\x02"),  # SECMSG before BIND
        _frame("NOPE"),
        "a text frame",
    ],
)
async def test_garbage_closes_only_that_connection(
    server: LocalServer, connect: Connect, garbage: bytes | str
) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    bad = WireClient(server.ws_url, "mallory")
    await bad.connect()
    await bad.send_raw(garbage)
    await bad.wait_closed()
    alice.session.send_p2p("bob", "unaffected", now=alice.now())
    await alice.flush()
    assert (await bob.next(P2PMessage)).text == "unaffected"
    late = await connect("carol")  # the server still accepts newcomers
    assert late.session.is_logged_in


async def test_garbage_after_login_closes_that_session(
    server: LocalServer, connect: Connect
) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    await bob.send_raw(b"\xc2\xfe junk junk junk junk")
    await bob.wait_closed()
    assert server.hub is not None
    assert bob.session.uuid is not None
    await eventually(lambda: not server.hub.online_resources(bob.session.uuid))  # type: ignore[union-attr,arg-type]
    alice.session.send_p2p("bob", "later", now=alice.now())
    await alice.flush()
    assert (await alice.next(ServerAck)).ok


async def test_ping_at_any_rate(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    ping = _frame(Cmd.PING, chid=9, uuid=alice.session.uuid, resource="r1", server="xiaomi.com")
    for _ in range(200):
        await alice.send_raw(ping)
    alice.session.send_p2p("bob", "after pings", now=alice.now())
    await alice.flush()
    assert (await alice.next(ServerAck)).ok
    assert (await bob.next(P2PMessage)).text == "after pings"


async def test_idle_connection_is_dropped(db_path: Path, clock: FakeClock) -> None:
    async with (
        make_server(db_path, clock, idle_timeout=0.2) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        quiet = WireClient(server.ws_url, "alice")
        await quiet.login((await login_http(http, "alice")).answer)
        await quiet.wait_closed()
        assert server.hub is not None
        await eventually(lambda: not server.hub.connections)  # type: ignore[union-attr]


async def test_stop_with_open_connections(db_path: Path, clock: FakeClock) -> None:
    server = make_server(db_path, clock)
    await server.start()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        client = WireClient(server.ws_url, "alice")
        await client.login((await login_http(http, "alice")).answer)
    async with asyncio.timeout(TIMEOUT):
        await server.stop()
    await client.wait_closed()
    with contextlib.suppress(Exception):
        await client.close()


async def test_packet_claiming_another_sender_is_refused(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    assert bob.session.uuid is not None
    forged = codec.MIMCP2PMessage(
        sender=codec.WireUser(
            app_id=APP.app_id, app_account="bob", uuid=bob.session.uuid, resource="r1"
        ),
        to=codec.WireUser(app_id=APP.app_id, app_account="bob"),
        payload=b"i am bob",
        is_store=True,
    )
    packet = codec.MIMCPacket(body=forged, packet_id="forged-1", package=APP.package)
    header = Header(
        chid=9,
        uuid=alice.session.uuid,
        server="xiaomi.com",
        resource="r1",
        cmd=Cmd.SECMSG,
        id="forged-1",
    )
    await alice.send_raw(serialize_frame(Frame(header=header, payload=codec.encode_packet(packet))))
    refusal = await alice.next(ServerAck)
    assert (refusal.packet_id, refusal.err_msg) == ("forged-1", "malformed packet")
    alice.session.send_p2p("bob", "genuine", now=alice.now())
    await alice.flush()
    assert (await alice.next(ServerAck, 2)).ok
    assert (await bob.next(P2PMessage)).text == "genuine"
    await bob.barrier()
    assert [m.text for m in bob.of(P2PMessage)] == ["genuine"]
    assert not alice.closed.is_set()
