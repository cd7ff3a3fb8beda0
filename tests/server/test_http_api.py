"""The HTTP APIs of docs/protocol.md 8.1-8.3 against a running server (httpx on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mimc_rx.server import LocalServer

from .conftest import APP, OTHER_APP, FakeClock, login_http

TOKEN_KEYS = {
    "appId",
    "appPackage",
    "appAccount",
    "miChid",
    "miUserId",
    "miUserSecurityKey",
    "token",
    "regionBucket",
    "feDomainName",
}


def _token_body(account: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "appId": str(APP.app_id),
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "appAccount": account,
    }
    body.update(overrides)
    return body


async def _users(http: httpx.AsyncClient) -> int:
    return int((await http.get("/api/status")).json()["data"]["users"])


# ------------------------------------------------------------------------ token service (8.1)


async def test_token_answer_shape(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/account/token", json=_token_body("alice"))
    assert response.status_code == 200
    answer = response.json()
    assert (answer["code"], answer["message"]) == (200, "success")
    data = answer["data"]
    assert set(data) == TOKEN_KEYS
    assert data["appId"] == str(APP.app_id)  # the web SDK compares with ===: strings
    assert data["appPackage"] == APP.package
    assert data["appAccount"] == "alice"
    assert data["miChid"] == 9
    assert isinstance(data["miUserId"], str)
    assert data["miUserId"].isdigit()
    assert isinstance(data["token"], str)
    assert data["token"]


async def test_token_uuid_is_stable_and_tokens_are_fresh(http: httpx.AsyncClient) -> None:
    first = await login_http(http, "alice")
    second = await login_http(http, "alice")
    other = await login_http(http, "bob")
    assert (first.uuid, first.key) == (second.uuid, second.key)
    assert first.token != second.token
    assert other.uuid != first.uuid
    assert other.key != first.key
    same_name_other_app = await login_http(http, "alice", OTHER_APP)
    assert same_name_other_app.uuid != first.uuid


@pytest.mark.parametrize(
    "overrides",
    [
        {"appSecret": "wrong"},
        {"appKey": "wrong"},
        {"appId": "999"},
        {"appId": str(APP.app_id), "appKey": OTHER_APP.app_key, "appSecret": OTHER_APP.app_secret},
        {"appSecret": None},
    ],
)
async def test_token_refused_issues_nothing(
    http: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    before = await _users(http)
    answer = (
        await http.post("/api/account/token", json=_token_body("mallory", **overrides))
    ).json()
    assert answer["code"] == 401
    assert answer["data"] is None
    assert await _users(http) == before


async def test_token_bad_requests(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/account/token", json=_token_body(""))).json()["code"] == 400
    assert (await http.post("/api/account/token", content=b"{nope")).json()["code"] == 400
    assert (await http.post("/api/account/token", json=[1, 2])).json()["code"] == 400


# ------------------------------------------------------------------------ normal groups (8.3)


def _topic_url(topic_id: str | None = None, suffix: str = "", app_id: int = APP.app_id) -> str:
    url = f"/api/topic/{app_id}"
    if topic_id is not None:
        url += f"/{topic_id}"
    return url + suffix


async def test_topic_lifecycle(http: httpx.AsyncClient) -> None:
    alice, bob = await login_http(http, "alice"), await login_http(http, "bob")
    as_alice, as_bob = {"token": alice.token}, {"token": bob.token}
    created = (
        await http.post(
            _topic_url(), headers=as_alice, json={"topicName": "t", "accounts": "bob, carol"}
        )
    ).json()
    assert created["code"] == 200, created
    info = created["data"]["topicInfo"]
    topic_id = info["topicId"]
    assert info == {
        "topicId": topic_id,
        "ownerUuid": str(alice.uuid),
        "ownerAccount": "alice",
        "topicName": "t",
        "bulletin": "",
    }
    assert [m["account"] for m in created["data"]["members"]] == ["alice", "bob", "carol"]
    assert created["data"]["members"][1]["uuid"] == str(bob.uuid)

    got = (await http.get(_topic_url(topic_id), headers=as_bob)).json()
    assert got["data"] == created["data"]
    mine = (await http.get(_topic_url(suffix="/account"), headers=as_bob)).json()
    assert [t["topicId"] for t in mine["data"]] == [topic_id]

    invited = (
        await http.post(
            _topic_url(topic_id, "/accounts"), headers=as_bob, json={"accounts": "dave"}
        )
    ).json()
    assert [m["account"] for m in invited["data"]["members"]] == ["alice", "bob", "carol", "dave"]

    # Only the owner kicks, updates, dismisses.
    refused = await http.delete(
        _topic_url(topic_id, "/accounts"), headers=as_bob, params={"accounts": "dave"}
    )
    assert refused.json()["code"] == 403
    kicked = (
        await http.delete(
            _topic_url(topic_id, "/accounts"), headers=as_alice, params={"accounts": "dave,carol"}
        )
    ).json()
    assert [m["account"] for m in kicked["data"]["members"]] == ["alice", "bob"]
    assert (await http.put(_topic_url(topic_id), headers=as_bob, json={"topicName": "x"})).json()[
        "code"
    ] == 403
    updated = (
        await http.put(
            _topic_url(topic_id),
            headers=as_alice,
            json={"topicName": "renamed", "bulletin": "hi", "ownerAccount": "bob"},
        )
    ).json()
    assert updated["data"]["topicInfo"]["topicName"] == "renamed"
    assert updated["data"]["topicInfo"]["bulletin"] == "hi"
    assert updated["data"]["topicInfo"]["ownerAccount"] == "bob"

    # The owner cannot leave (the manual's "quit topic fail"); a member can.
    left_owner = (await http.delete(_topic_url(topic_id, "/account"), headers=as_bob)).json()
    assert left_owner == {"code": 500, "message": "quit topic fail", "data": None}
    left = (await http.delete(_topic_url(topic_id, "/account"), headers=as_alice)).json()
    assert left == {"code": 200, "message": "success", "data": None}
    assert (await http.get(_topic_url(topic_id), headers=as_alice)).json()["code"] == 403

    assert (await http.delete(_topic_url(topic_id), headers=as_bob)).json()["code"] == 200
    assert (await http.get(_topic_url(topic_id), headers=as_bob)).json()["code"] == 404
    assert (await http.get(_topic_url(suffix="/account"), headers=as_bob)).json()["data"] == []


async def test_topic_member_limit(http: httpx.AsyncClient) -> None:
    # The fixture's server allows 5 members (the default is 500).
    alice = await login_http(http, "alice")
    headers = {"token": alice.token}
    too_many = (
        await http.post(
            _topic_url(), headers=headers, json={"topicName": "t", "accounts": "a,b,c,d,e"}
        )
    ).json()
    assert too_many["code"] == 400
    assert "limit 5" in too_many["message"]
    ok = (
        await http.post(
            _topic_url(), headers=headers, json={"topicName": "t", "accounts": "a,b,c,d"}
        )
    ).json()
    topic_id = ok["data"]["topicInfo"]["topicId"]
    full = (
        await http.post(_topic_url(topic_id, "/accounts"), headers=headers, json={"accounts": "e"})
    ).json()
    assert full["code"] == 400
    assert (
        len((await http.get(_topic_url(topic_id), headers=headers)).json()["data"]["members"]) == 5
    )


async def test_topic_auth_with_app_credentials(http: httpx.AsyncClient) -> None:
    headers = {"appKey": APP.app_key, "appSecret": APP.app_secret, "appAccount": "erin"}
    created = (await http.post(_topic_url(), headers=headers, json={"topicName": "t"})).json()
    assert created["data"]["topicInfo"]["ownerAccount"] == "erin"
    bad = dict(headers, appSecret="wrong")
    assert (await http.post(_topic_url(), headers=bad, json={"topicName": "t"})).json()[
        "code"
    ] == 401
    assert (await http.post(_topic_url(), json={"topicName": "t"})).json()["code"] == 401


async def test_topic_auth_errors(
    http: httpx.AsyncClient, server: LocalServer, clock: FakeClock
) -> None:
    alice = await login_http(http, "alice")
    headers = {"token": alice.token}
    # appId in the path must be the token's app.
    assert (
        await http.post(
            _topic_url(app_id=OTHER_APP.app_id), headers=headers, json={"topicName": "t"}
        )
    ).json()["code"] == 403
    assert (await http.get(_topic_url("123"), headers=headers)).json()["code"] == 404
    assert (await http.get(_topic_url(suffix="/account"), headers={"token": "junk"})).json() == {
        "code": 401,
        "message": "invalid token",
        "data": None,
    }
    clock.advance(server.config.token_ttl + 1)
    expired = (await http.get(_topic_url(suffix="/account"), headers=headers)).json()
    assert (expired["code"], expired["message"]) == (401, "token expired")


# ----------------------------------------------------------------------- unlimited groups (8.2)


async def test_uctopic_lifecycle(http: httpx.AsyncClient) -> None:
    alice, bob = await login_http(http, "alice"), await login_http(http, "bob")
    as_alice, as_bob = {"token": alice.token}, {"token": bob.token}
    assert (await http.get("/api/uctopic/topics", headers=as_alice)).json() == {
        "code": 200,
        "message": "success",
        "data": [],
    }
    created = (await http.post("/api/uctopic", headers=as_alice, json={"topicName": "room"})).json()
    assert (created["code"], created["message"]) == (200, "success")
    topic_id = created["data"]["topicId"]
    assert isinstance(topic_id, str)
    assert topic_id.isdigit()
    assert created["data"]["topicName"] == "room"
    assert (await http.get("/api/uctopic/topics", headers=as_alice)).json()["data"] == [topic_id]
    assert (await http.get("/api/uctopic/topics", headers=as_bob)).json()["data"] == []
    members = (
        await http.get("/api/uctopic/userlist", headers={**as_alice, "topicId": topic_id})
    ).json()
    assert members["data"]["members"] == [
        {"appAccout": "alice", "appAccount": "alice", "appId": str(APP.app_id)}
    ]
    assert (await http.delete("/api/uctopic", headers={**as_bob, "topicId": topic_id})).json()[
        "code"
    ] == 403
    assert (await http.delete("/api/uctopic", headers=as_alice)).json()["code"] == 400
    dismissed = (
        await http.delete("/api/uctopic", headers={**as_alice, "topicId": topic_id})
    ).json()
    assert dismissed == {"code": 200, "message": "success", "data": None}
    assert (await http.get("/api/uctopic/topics", headers=as_alice)).json()["data"] == []
    assert (await http.delete("/api/uctopic", headers={**as_alice, "topicId": topic_id})).json()[
        "code"
    ] == 404


async def test_refused_invite_creates_no_users(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    # The fixture's server allows 5 members: alice + 3, then an invite of 2 newcomers is refused.
    alice = await login_http(http, "alice")
    headers = {"token": alice.token}
    ok = (
        await http.post(_topic_url(), headers=headers, json={"topicName": "t", "accounts": "a,b,c"})
    ).json()
    topic_id = ok["data"]["topicInfo"]["topicId"]
    refused = (
        await http.post(
            _topic_url(topic_id, "/accounts"), headers=headers, json={"accounts": "new1,new2"}
        )
    ).json()
    assert refused["code"] == 400, refused
    assert server.hub is not None
    storage = server.hub.storage
    assert await storage.find_user(APP.app_id, "new1") is None
    assert await storage.find_user(APP.app_id, "new2") is None
    # Members already in count once: re-inviting them with one newcomer fits (4 + 1 = 5).
    fits = (
        await http.post(
            _topic_url(topic_id, "/accounts"), headers=headers, json={"accounts": "a,b,new1"}
        )
    ).json()
    assert fits["code"] == 200, fits
    assert len(fits["data"]["members"]) == 5
