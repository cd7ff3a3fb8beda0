"""Recent contacts (docs/protocol.md 8.5) against a running server: list, delete, auth, catch-up."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from mimc_rx.protocol.events import P2PMessage, P2TMessage, PullNotification, ServerAck
from mimc_rx.server import LocalServer

from .conftest import APP, TIMEOUT, Account, FakeClock, login_http, make_server
from .wire import WireClient

GROUP = 5_000_000_000_000_000_001


async def _contacts(http: httpx.AsyncClient, token: str, method: str = "GET", url: str = "") -> Any:
    """The list answered by GET /api/contact/ (or by a DELETE at ``url``)."""
    response = await http.request(method, url or "/api/contact/", headers={"token": token})
    assert response.status_code == 200
    answer = response.json()
    assert (answer["code"], answer["message"]) == (200, "success"), answer
    return answer["data"]


def _summary(contacts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(userType, name, last payload) of each entry, in order."""
    return [
        (c["userType"], c["name"], base64.b64decode(c["lastMessage"]["payload"]).decode())
        for c in contacts
    ]


async def _online(server: LocalServer, http: httpx.AsyncClient, *names: str) -> list[WireClient]:
    clients = []
    for name in names:
        client = WireClient(server.ws_url, name)
        await client.login((await login_http(http, name)).answer)
        clients.append(client)
    return clients


@pytest.mark.sqlite_only
async def test_contacts_list_conversations_newest_first(
    server: LocalServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.seed_topic(GROUP, owner="alice", members=["bob", "carol"], name="friends")
    alice, bob, carol, dave = await _online(server, http, "alice", "bob", "carol", "dave")
    alice.session.send_p2p("bob", "a->b", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck)
    clock.advance(1)
    bob.session.send_p2p("alice", "b->a", biz_type="TEXT", now=bob.now())
    await bob.flush()
    from_bob = await alice.next(P2PMessage)
    clock.advance(1)
    alice.session.send_p2p("carol", "a->c", now=alice.now())
    await alice.flush()
    to_carol = await alice.next(ServerAck, 2)
    clock.advance(1)
    carol.session.send_p2t(GROUP, "c->g", now=carol.now())
    await carol.flush()
    in_group = await alice.next(P2TMessage)
    clock.advance(1)
    dave.session.send_p2p("alice", "not stored", is_store=False, now=dave.now())
    await dave.flush()
    await alice.next(P2PMessage, 2)

    token = (await login_http(http, "alice")).token
    listed = await _contacts(http, token)
    assert _summary(listed) == [
        ("TOPIC", "friends", "c->g"),
        ("USER", "carol", "a->c"),
        ("USER", "bob", "b->a"),
    ]  # dave's message was not stored: no conversation
    topic, carol_entry, bob_entry = listed
    users = server.hub.store.users if server.hub else {}
    uuid_of = {u.account: u.uuid for u in users.values()}
    assert topic == {
        "userType": "TOPIC",
        "id": str(GROUP),
        "name": "friends",
        "timestamp": str(in_group.timestamp),
        "lastMessage": {
            "fromUuid": str(uuid_of["carol"]),
            "fromAccount": "carol",
            "payload": base64.b64encode(b"c->g").decode(),
            "sequence": str(in_group.sequence),  # what alice's client saw
            "bizType": "",
            "packetId": in_group.packet_id,
        },
    }
    assert (carol_entry["id"], carol_entry["lastMessage"]["sequence"]) == (
        str(uuid_of["carol"]),
        str(to_carol.sequence),  # alice's own message: the sequence of her ack
    )
    assert carol_entry["lastMessage"]["fromAccount"] == "alice"
    assert bob_entry["id"] == str(uuid_of["bob"])
    assert bob_entry["lastMessage"]["sequence"] == str(from_bob.sequence)
    assert bob_entry["lastMessage"]["bizType"] == "TEXT"
    assert all(isinstance(c["timestamp"], str) for c in listed)
    # The same conversations seen by bob, in his own sequence space.
    bob_token = (await login_http(http, "bob")).token
    assert _summary(await _contacts(http, bob_token)) == [
        ("TOPIC", "friends", "c->g"),
        ("USER", "alice", "b->a"),
    ]
    assert await _contacts(http, (await login_http(http, "nobody")).token) == []
    # Without the trailing slash too.
    assert await _contacts(http, token, url="/api/contact") == listed
    for client in (alice, bob, carol, dave):
        await client.close()


@pytest.mark.sqlite_only
async def test_deleting_a_session_hides_it_until_its_next_message(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    server.seed_topic(GROUP, owner="alice", members=["bob"], name="pair")
    alice, bob = await _online(server, http, "alice", "bob")
    alice.session.send_p2p("bob", "one", now=alice.now())
    alice.session.send_p2t(GROUP, "two", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck, 2)
    token = (await login_http(http, "alice")).token
    assert _summary(await _contacts(http, token)) == [
        ("TOPIC", "pair", "two"),
        ("USER", "bob", "one"),
    ]

    # The manual: a delete answers the list that remains.
    after = await _contacts(http, token, "DELETE", "/api/contact/p2p/session?member=bob")
    assert _summary(after) == [("TOPIC", "pair", "two")]
    assert await _contacts(http, token) == after
    bob_token = (await login_http(http, "bob")).token
    assert len(await _contacts(http, bob_token)) == 2  # only alice's list changed
    after = await _contacts(http, token, "DELETE", f"/api/contact/p2t/session/?topicId={GROUP}")
    assert after == []
    # Deleting what is not listed changes nothing.
    for url in ("/api/contact/p2p/session?member=nobody", "/api/contact/p2t/session?topicId=7"):
        assert await _contacts(http, token, "DELETE", url) == []

    bob.session.send_p2p("alice", "three", now=bob.now())
    await bob.flush()
    await alice.next(P2PMessage)
    assert _summary(await _contacts(http, token)) == [("USER", "bob", "three")]
    bob.session.send_p2t(GROUP, "four", now=bob.now())
    await bob.flush()
    await alice.next(P2TMessage)
    assert _summary(await _contacts(http, token)) == [
        ("TOPIC", "pair", "four"),
        ("USER", "bob", "three"),
    ]
    for client in (alice, bob):
        await client.close()


async def test_a_deleted_session_stays_hidden_after_a_restart(
    db_path: Path, clock: FakeClock
) -> None:
    async with (
        make_server(db_path, clock) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        clients = await _online(server, http, "alice", "bob")
        clients[0].session.send_p2p("bob", "hello", now=clients[0].now())
        await clients[0].flush()
        await clients[0].next(ServerAck)
        token = (await login_http(http, "bob")).token
        await _contacts(http, token, "DELETE", "/api/contact/p2p/session?member=alice")
        for client in clients:
            await client.close()
    async with (
        make_server(db_path, clock) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        assert await _contacts(http, (await login_http(http, "bob")).token) == []
        alice_list = await _contacts(http, (await login_http(http, "alice")).token)
        assert _summary(alice_list) == [("USER", "bob", "hello")]  # hidden for bob only


async def test_old_conversations_drop_out_after_a_month(
    server: LocalServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    alice, bob = await _online(server, http, "alice", "bob")
    alice.session.send_p2p("bob", "old", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck)
    clock.advance(29 * 24 * 3600)
    assert len(await _contacts(http, (await login_http(http, "alice")).token)) == 1
    clock.advance(2 * 24 * 3600)
    assert await _contacts(http, (await login_http(http, "alice")).token) == []
    for client in (alice, bob):
        await client.close()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/contact/"),
        ("DELETE", "/api/contact/p2p/session?member=bob"),
        ("DELETE", "/api/contact/p2t/session?topicId=1"),
    ],
)
async def test_contacts_need_a_valid_token(
    http: httpx.AsyncClient, clock: FakeClock, method: str, url: str
) -> None:
    alice = await login_http(http, "alice")
    for headers, message in (
        ({}, "missing credentials"),
        ({"token": "no-such-token"}, "invalid token"),
    ):
        answer = (await http.request(method, url, headers=headers)).json()
        assert (answer["code"], answer["data"]) == (401, None)
        assert message in answer["message"]
    clock.advance(25 * 3600)  # past the token's 24 h
    answer = (await http.request(method, url, headers={"token": alice.token})).json()
    assert (answer["code"], answer["message"]) == (401, "token expired")


async def test_delete_parameters_are_checked(http: httpx.AsyncClient) -> None:
    token = (await login_http(http, "alice")).token
    for url in (
        "/api/contact/p2p/session",
        "/api/contact/p2p/session?member=",
        "/api/contact/p2t/session",
        "/api/contact/p2t/session?topicId=abc",
    ):
        answer = (await http.delete(url, headers={"token": token})).json()
        assert answer["code"] == 400, url


async def test_after_a_pull_notification_contacts_and_history_catch_up(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    """docs/protocol.md 6.10: the backlog is announced, acked, and fetched over REST instead."""
    (alice,) = await _online(server, http, "alice")
    bob_account: Account = await login_http(http, "bob")
    for i in range(7):  # backlog_limit is 5 in the fixture; bob is offline
        alice.session.send_p2p("bob", f"m{i}", now=alice.now())
    await alice.flush()
    await alice.next(ServerAck, 7)

    bob = WireClient(server.ws_url, "bob")  # acks the notification at once (the SDK default)
    await bob.login(bob_account.answer)
    note = await bob.next(PullNotification)
    assert bob.of(P2PMessage) == []
    entry = (await _contacts(http, bob_account.token))[0]
    assert (entry["userType"], entry["name"]) == ("USER", "alice")
    assert entry["lastMessage"]["sequence"] == str(note.max_sequence)
    assert base64.b64decode(entry["lastMessage"]["payload"]) == b"m6"
    history = (
        await http.post(
            "/api/msg/p2p/queryOnSequence",
            headers={"token": bob_account.token},
            json={
                "appId": str(APP.app_id),
                "fromAccount": "alice",
                "toAccount": "bob",
                "startSeq": note.min_sequence,
                "stopSeq": note.max_sequence + 1,
            },
        )
    ).json()
    assert [base64.b64decode(m["payload"]) for m in history["data"]["messages"]] == [
        f"m{i}".encode() for i in range(7)
    ]
    for client in (alice, bob):
        await client.close()
