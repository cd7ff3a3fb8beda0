"""The push API (protocol.md 8.5): a backend sends as an account; receivers see plain messages."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from mimc_rx.protocol.events import P2PMessage, P2TMessage
from mimc_rx.server import AppConfig, LocalServer

from .capture import APP as CAPTURE_APP
from .conftest import APP, OTHER_APP, login_http
from .replay import ALICE, BOB, NOW_MS, Replay, check_shape
from .sdk_model import Call
from .wire import WireClient

GROUP, OTHER_GROUP = 6_000_000_000_000_000_001, 6_000_000_000_000_000_002


def _body(app: AppConfig = APP, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appId": str(app.app_id),
        "appKey": app.app_key,
        "appSecret": app.app_secret,
        "fromAccount": "alice",
        "fromResource": "backend",
        "msg": "hello",
        "msgType": "",
    }
    body.update(fields)
    return body


async def _push(http: httpx.AsyncClient, path: str, **fields: Any) -> dict[str, Any]:
    response = await http.post(f"/api/push/{path}", json=_body(**fields))
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


async def _ok(http: httpx.AsyncClient, path: str, **fields: Any) -> Any:
    answer = await _push(http, path, **fields)
    assert (answer["code"], answer["message"]) == (200, "success"), answer
    return answer["data"]


async def _online(server: LocalServer, http: httpx.AsyncClient, name: str) -> WireClient:
    client = WireClient(server.ws_url, name)
    await client.login((await login_http(http, name)).answer)
    return client


async def _stored(server: LocalServer, account: str) -> int:
    """How many stored messages wait in the inbox of ``account`` (0 for unknown accounts)."""
    assert server.hub is not None
    user = await server.hub.storage.find_user(APP.app_id, account)
    return 0 if user is None else (await server.hub.storage.backlog_summary(user.uuid, 0))[0]


async def test_push_p2p_arrives_like_a_message_from_the_account(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    alice, bob = await _online(server, http, "alice"), await _online(server, http, "bob")
    data = await _ok(http, "p2p/", toAccount="bob", msg="hello 😀", bizType="NOTICE")
    message = await bob.next(P2PMessage)
    assert message.packet_id == data["packetId"]
    assert (message.from_account, message.from_resource) == ("alice", "backend")
    assert (message.to_account, message.text, message.biz_type) == ("bob", "hello 😀", "NOTICE")
    assert message.is_store
    assert message.timestamp == server.config.now_ms()
    # Binary payloads with msgType "base64"; the path without the trailing slash too.
    raw = bytes(range(256))
    second = await _ok(
        http, "p2p", toAccount="bob", msg=base64.b64encode(raw).decode(), msgType="base64"
    )
    again = await bob.next(P2PMessage, 2)
    assert (again.packet_id, again.payload) == (second["packetId"], raw)
    assert again.sequence > message.sequence
    assert second["packetId"] != data["packetId"]
    # Stored like any message: in bob's history, seen from alice's side too.
    token = (await login_http(http, "alice")).token
    history = (
        await http.post(
            "/api/msg/p2p/queryOnCount",
            headers={"token": token},
            json={
                "appId": str(APP.app_id),
                "fromAccount": "alice",
                "toAccount": "bob",
                "utcToTime": server.config.now_ms() + 1,
                "count": 10,
            },
        )
    ).json()
    assert [m["packetId"] for m in history["data"]["messages"]] == [
        data["packetId"],
        second["packetId"],
    ]
    assert alice.of(P2PMessage) == []  # the sender's sessions get no copy of a P2P
    for client in (alice, bob):
        await client.close()


async def test_push_p2p_more_reaches_online_and_offline_accounts(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    bob, carol = await _online(server, http, "bob"), await _online(server, http, "carol")
    data = await _ok(http, "p2p/more", toAccounts=["bob", "carol", "dave"], msg="to all")
    ids = data["packetIds"]
    assert len(set(ids)) == 3  # one per entry of toAccounts, in order
    assert (await bob.next(P2PMessage)).packet_id == ids[0]
    assert (await carol.next(P2PMessage)).packet_id == ids[1]
    assert await _stored(server, "dave") == 1  # dave never logged in: it waits for him
    dave = await _online(server, http, "dave")
    late = await dave.next(P2PMessage)
    assert (late.packet_id, late.text, late.from_account) == (ids[2], "to all", "alice")
    for client in (bob, carol, dave):
        await client.close()


@pytest.mark.sqlite_only
async def test_push_p2t_reaches_every_member_session_but_the_nominal_sender(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    server.seed_topic(GROUP, owner="alice", members=["bob", "carol"], name="g1")
    server.seed_topic(OTHER_GROUP, owner="bob", members=["alice"], name="g2")
    alice_phone = await _online(server, http, "alice")  # resource r1; the push names "backend"
    bob, carol = await _online(server, http, "bob"), await _online(server, http, "carol")
    data = await _ok(http, "p2t/", topicId=str(GROUP), msg="group news")
    for client in (alice_phone, bob, carol):
        message = await client.next(P2TMessage)
        assert (message.packet_id, message.topic_id, message.text) == (
            data["packetId"],
            GROUP,
            "group news",
        )
        assert (message.from_account, message.from_resource) == ("alice", "backend")
    both = await _ok(http, "p2t/more", topicIds=[GROUP, str(OTHER_GROUP)], msg="both")
    assert len(set(both["packetIds"])) == 2
    got = [m.packet_id for m in (await bob.next(P2TMessage, 3), bob.of(P2TMessage)[1])]
    assert sorted(got) == sorted(both["packetIds"])
    # A session of the sender whose resource is the push's fromResource counts as the sender.
    alice_backend = WireClient(server.ws_url, "alice", resource="backend")
    await alice_backend.login((await login_http(http, "alice")).answer)
    await _ok(http, "p2t/", topicId=GROUP, msg="third")
    assert (await alice_phone.next(P2TMessage, 4)).text == "third"
    assert (await carol.next(P2TMessage, 3)).text == "third"
    # bob pushes next: that is the first group message alice's "backend" session receives.
    await _ok(http, "p2t/", topicId=GROUP, fromAccount="bob", fromResource="", msg="from bob")
    first = await alice_backend.next(P2TMessage)
    assert (first.text, first.from_account) == ("from bob", "bob")
    for client in (alice_phone, alice_backend, bob, carol):
        await client.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("path", "fields", "code"),
    [
        ("p2p/", {"appSecret": "wrong"}, 401),
        ("p2p/", {"appKey": OTHER_APP.app_key}, 401),
        ("p2p/", {"appId": "999"}, 401),
        ("p2p/", {"fromAccount": ""}, 400),
        ("p2p/", {"fromResource": 7}, 400),
        ("p2p/", {"toAccount": None}, 400),
        ("p2p/", {"msg": None}, 400),
        ("p2p/", {"msgType": "hex"}, 400),
        ("p2p/", {"msgType": "base64", "msg": "not base64!"}, 400),
        ("p2p/", {"msg": "x" * (15360 * 3 + 1)}, 400),
        ("p2p/more", {"toAccounts": []}, 400),
        ("p2p/more", {"toAccounts": "bob"}, 400),
        ("p2p/more", {"toAccounts": ["bob", ""]}, 400),
        ("p2p/more", {"toAccounts": ["bob"] * 1001}, 400),
        ("p2t/", {"topicId": "abc"}, 400),
        ("p2t/", {"topicId": 123}, 404),
        ("p2t/more", {"topicIds": [GROUP, 123]}, 404),
        ("p2t/", {"topicId": GROUP, "fromAccount": "carol"}, 403),
        ("p2t/", {"topicId": GROUP, "fromAccount": "mallory"}, 403),
        ("p2t/more", {"topicIds": [GROUP, OTHER_GROUP]}, 403),
    ],
)
async def test_push_refusals_send_nothing(
    server: LocalServer, http: httpx.AsyncClient, path: str, fields: dict[str, Any], code: int
) -> None:
    server.seed_topic(GROUP, owner="alice", members=["bob"])
    server.seed_topic(OTHER_GROUP, owner="bob")  # alice is not in it
    fields.setdefault("toAccount", "bob")
    answer = await _push(http, path, **fields)
    assert (answer["code"], answer["data"]) == (code, None), answer
    assert await _stored(server, "bob") == 0
    assert server.hub is not None
    assert await server.hub.storage.find_user(APP.app_id, "mallory") is None


async def test_a_pushed_message_is_accepted_by_the_official_sdk(replay: Replay) -> None:
    """Against the capture's bob (SDK model), a push is a COMPOUND the SDK 1.0.3 dispatches."""
    bob = await replay.login(BOB)
    answer = await replay.http.post(
        "/api/push/p2p/",
        json=_body(CAPTURE_APP, toAccount=BOB.account, fromResource="res-push", bizType="TEXT"),
    )
    packet_id = answer.json()["data"]["packetId"]
    compound = await bob.receive()
    assert compound.dropped is None
    (call,) = compound.calls
    assert call == Call(
        "p2p",
        [
            {
                "packetId": packet_id,
                "sequence": call.args[0]["sequence"],
                "fromAccount": ALICE.account,
                "fromResource": "res-push",
                "payload": "hello",
                "timeStamp": NOW_MS,
                "bizType": "TEXT",
                "toAccount": BOB.account,
                "toResource": "",
            }
        ],
    )
    check_shape(compound, "s2c_secmsg_compound_p2p", BOB.security_key)
    assert compound.replies == [("SEQUENCE_ACK", call.args[0]["sequence"])]


@pytest.mark.sqlite_only
async def test_a_push_that_cannot_be_committed_is_not_delivered(
    server: LocalServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = await _online(server, http, "bob")
    assert server.hub is not None
    store = server.hub.store

    def broken() -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(store, "commit", broken)
        answer = await _push(http, "p2p/", toAccount="bob", msg="lost")
    assert (answer["code"], answer["message"]) == (500, "internal error")
    assert await _stored(server, "bob") == 0
    # The next push works, and is the first message bob receives.
    data = await _ok(http, "p2p/", toAccount="bob", msg="kept")
    first = await bob.next(P2PMessage)
    assert (first.packet_id, first.text) == (data["packetId"], "kept")
    await bob.close()
