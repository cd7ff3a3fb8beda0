"""Hostile values inside well-formed requests: ids that are not integers, fields too long to store.

Every id a route reads must be refused with code 400 when it is infinite (``1e400`` is valid
JSON and Python reads it as infinity), fractional or a float at all; every field the server stores
is bounded by ``ServerConfig.max_field_bytes`` / ``max_text_bytes``, refused over HTTP with 400
and on the websocket with an ``errorMsg`` in the PACKET_ACK (docs/protocol.md 6.6).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from mimc_rx.protocol import codec
from mimc_rx.protocol.codec import Cmd, Header
from mimc_rx.protocol.events import (
    P2PMessage,
    P2TMessage,
    ServerAck,
    StatusChange,
    UCJoinResult,
    UCMessage,
)
from mimc_rx.protocol.framing import Frame, serialize_frame
from mimc_rx.server import LocalServer, ServerConfig
from mimc_rx.server.rest import build_app

from .conftest import APP, login_http
from .wire import WireClient

LIMIT = ServerConfig().max_field_bytes
TEXT_LIMIT = ServerConfig().max_text_bytes
LONG = "x" * (LIMIT + 1)

BAD_NUMBERS = ["1e400", "-1e400", "1.5", "1e18"]
"""JSON numbers that are no int64: infinite both ways, fractional, and integral but a float."""


def _body(number: str) -> bytes:
    """A body naming every id any route reads, each set to ``number`` (raw JSON text)."""
    fields = {
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "appAccount": "alice",
        "account": "alice",
        "fromAccount": "alice",
        "toAccount": "bob",
        "toAccounts": ["bob"],
        "msg": "hi",
        "topicName": "t",
    }
    ids = ("appId", "topicId", "utcFromTime", "utcToTime", "startSeq", "stopSeq", "count")
    text = json.dumps(fields)[:-1]
    text += "".join(f', "{name}": {number}' for name in ids)
    return (text + f', "topicIds": [{number}]}}').encode()


# Routes that read an id from the body, a header or the query before anything else.
_READS_AN_ID = re.compile(r"^/api/(account/token|push/|msg/|uctopic/userlist|contact/p2t/session)")


def _expects_400(path: str, method: str) -> bool:
    return bool(_READS_AN_ID.match(path)) or (path == "/api/uctopic" and method == "DELETE")


async def _group(http: httpx.AsyncClient, token: str) -> int:
    answer = (
        await http.post(
            f"/api/topic/{APP.app_id}", headers={"token": token}, json={"topicName": "g"}
        )
    ).json()
    return int(answer["data"]["topicInfo"]["topicId"])


@pytest.mark.parametrize("number", BAD_NUMBERS)
async def test_every_route_refuses_ids_that_are_not_int64(
    server: LocalServer, http: httpx.AsyncClient, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.hub is not None
    token = (await login_http(http, "alice")).token
    await login_http(http, "bob")
    topic = await _group(http, token)
    routes = [r for r in build_app(server.hub).http.routes if isinstance(r, Route)]
    assert len(routes) > 30  # the whole API, not an empty list
    for route in routes:
        path = route.path.replace("{app_id:int}", str(APP.app_id))
        path = path.replace("{topic_id:int}", str(topic))
        for method in sorted((route.methods or set()) - {"HEAD"}):
            answer = await http.request(
                method,
                path,
                params={"topicId": number, "member": "bob", "accounts": "bob"},
                headers={"token": token, "topicId": number, "content-type": "application/json"},
                content=_body(number),
            )
            assert answer.status_code == 200, (method, path)
            envelope = answer.json()
            assert envelope["code"] != 500, (method, path, envelope)
            if _expects_400(path, method):
                assert envelope["code"] == 400, (method, path, envelope)
                assert "64-bit integer" in envelope["message"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_token_service_refuses_an_infinite_app_id_before_the_credentials(
    http: httpx.AsyncClient,
) -> None:
    raw = b'{"appId": 1e400, "appKey": "wrong", "appSecret": "wrong", "appAccount": "a"}'
    answer = (await http.post("/api/account/token", content=raw)).json()
    assert (answer["code"], answer["message"]) == (400, "appId must be a 64-bit integer")


# ---------------------------------------------------------------------------- HTTP field limits


def _push(**fields: Any) -> dict[str, Any]:
    body = {
        "appId": str(APP.app_id),
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "fromAccount": "alice",
        "toAccount": "bob",
        "msg": "hi",
    }
    return {**body, **fields}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/push/p2p/", _push(fromAccount=LONG), "fromAccount"),
        ("/api/push/p2p/", _push(toAccount=LONG), "toAccount"),
        ("/api/push/p2p/", _push(bizType=LONG), "bizType"),
        ("/api/push/p2p/", _push(fromResource=LONG), "fromResource"),
        ("/api/push/p2p/more", _push(toAccounts=["bob", LONG]), "toAccounts"),
    ],
)
async def test_push_refuses_long_fields(
    server: LocalServer, http: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    answer = (await http.post(path, json=body)).json()
    assert answer["code"] == 400, answer
    assert field in answer["message"]
    assert f"at most {LIMIT} bytes" in answer["message"]
    assert server.hub is not None
    assert await server.hub.storage.find_user(APP.app_id, LONG) is None  # nobody was created


async def test_the_token_service_refuses_long_and_unencodable_accounts(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    body = {"appId": str(APP.app_id), "appKey": APP.app_key, "appSecret": APP.app_secret}
    answer = (await http.post("/api/account/token", json={**body, "appAccount": LONG})).json()
    assert (answer["code"], answer["message"]) == (400, f"appAccount may be at most {LIMIT} bytes")
    raw = json.dumps({**body, "appAccount": "x"})[:-1] + ', "appAccount": "\\ud800"}'
    answer = (await http.post("/api/account/token", content=raw.encode())).json()
    assert answer["code"] == 400, answer  # a lone surrogate: not a 500 from SQLite
    assert server.hub is not None
    assert await server.hub.storage.find_user(APP.app_id, LONG) is None


async def test_credential_headers_refuse_a_long_account(http: httpx.AsyncClient) -> None:
    headers = {"appKey": APP.app_key, "appSecret": APP.app_secret, "appAccount": LONG}
    answer = (await http.get("/api/uctopic/topics", headers=headers)).json()
    assert answer["code"] == 400, answer


async def test_groups_refuse_long_names_bulletins_and_accounts(http: httpx.AsyncClient) -> None:
    token = (await login_http(http, "alice")).token
    auth = {"token": token}
    base = f"/api/topic/{APP.app_id}"
    long_text = "y" * (TEXT_LIMIT + 1)
    for body in ({"topicName": long_text}, {"topicName": "g", "accounts": f"bob,{LONG}"}):
        answer = (await http.post(base, headers=auth, json=body)).json()
        assert answer["code"] == 400, answer
    topic = await _group(http, token)
    answer = (await http.put(f"{base}/{topic}", headers=auth, json={"bulletin": long_text})).json()
    assert (answer["code"], answer["message"]) == (
        400,
        f"bulletin may be at most {TEXT_LIMIT} bytes",
    )
    answer = (await http.post("/api/uctopic", headers=auth, json={"topicName": long_text})).json()
    assert answer["code"] == 400, answer
    # At the limit itself, all is well.
    answer = (
        await http.put(f"{base}/{topic}", headers=auth, json={"bulletin": "z" * TEXT_LIMIT})
    ).json()
    assert answer["code"] == 200, answer


# ---------------------------------------------------------------------------- websocket limits

Connect = Callable[..., Awaitable[WireClient]]


@pytest.fixture
async def connect(server: LocalServer, http: httpx.AsyncClient) -> AsyncIterator[Connect]:
    clients: list[WireClient] = []

    async def make(account: str, resource: str = "r1", *, expect_ok: bool = True) -> WireClient:
        client = WireClient(server.ws_url, account, resource)
        clients.append(client)
        await client.login((await login_http(http, account)).answer, expect_ok=expect_ok)
        return client

    yield make
    for client in clients:
        await client.close()


async def _raw_p2p(
    sender: WireClient,
    *,
    packet_id: str = "raw-1",
    to_account: str = "bob",
    to_resource: str = "",
    biz_type: str = "",
) -> None:
    uuid = sender.session.uuid
    body = codec.MIMCP2PMessage(
        sender=codec.WireUser(app_id=APP.app_id, app_account="alice", uuid=uuid, resource="r1"),
        to=codec.WireUser(app_id=APP.app_id, app_account=to_account, resource=to_resource or None),
        payload=b"hi",
        is_store=True,
        biz_type=biz_type or None,
    )
    packet = codec.MIMCPacket(body=body, packet_id=packet_id, package=APP.package)
    header = Header(chid=9, uuid=uuid, server="xiaomi.com", resource="r1", cmd=Cmd.SECMSG, id="raw")
    await sender.send_raw(
        serialize_frame(Frame(header=header, payload=codec.encode_packet(packet)))
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"packet_id": LONG}, "packetId too long"),
        ({"biz_type": LONG}, "bizType too long"),
        ({"to_account": LONG}, "toAccount too long"),
        ({"to_resource": LONG}, "toResource too long"),
    ],
)
async def test_a_p2p_with_a_long_field_is_refused_in_its_ack(
    server: LocalServer, connect: Connect, fields: dict[str, str], error: str
) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    await _raw_p2p(alice, **fields)
    refusal = await alice.next(ServerAck)
    assert (refusal.ok, refusal.err_msg) == (False, error)
    await _raw_p2p(alice, packet_id="raw-2", biz_type="b" * LIMIT)  # at the limit: accepted
    assert (await alice.next(ServerAck, 2)).ok
    await bob.barrier()
    assert [m.packet_id for m in bob.of(P2PMessage)] == ["raw-2"]
    assert server.hub is not None
    assert await server.hub.storage.find_user(APP.app_id, LONG) is None


async def test_group_messages_with_a_long_biz_type_are_refused(
    http: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await login_http(http, "alice")
    group = await http.post(
        f"/api/topic/{APP.app_id}",
        headers={"token": owner.token},
        json={"topicName": "g", "accounts": "bob"},
    )
    topic = int(group.json()["data"]["topicInfo"]["topicId"])
    room = await http.post("/api/uctopic", headers={"token": owner.token}, json={"topicName": "r"})
    uc_topic = int(room.json()["data"]["topicId"])
    alice, bob = await connect("alice"), await connect("bob")
    bob.session.join_uc(uc_topic, now=bob.now())
    await bob.flush()
    # The barrier: bob is a member from his JOIN_RESP on, not from when he sent the JOIN (it
    # waits behind his login's reads; test_gateway.py, the JOIN behind a slow login).
    assert (await bob.next(UCJoinResult)).ok
    alice.session.send_p2t(topic, "group", biz_type=LONG, now=alice.now())
    alice.session.send_uc(uc_topic, "room", biz_type=LONG, now=alice.now())
    alice.session.send_uc(uc_topic, "fine", now=alice.now())
    await alice.flush()
    assert (await alice.next(ServerAck)).err_msg == "bizType too long"
    await bob.wait(lambda: len(bob.of(UCMessage)) == 1)
    await bob.barrier()
    assert [m.text for m in bob.of(UCMessage)] == ["fine"]
    assert bob.of(P2TMessage) == []


async def test_a_bind_with_a_long_resource_is_refused(connect: Connect) -> None:
    refused = await connect("alice", "r" * (LIMIT + 1), expect_ok=False)
    status = refused.of(StatusChange)[-1]
    assert (status.online, status.err_reason) == (False, "invalid-resource")
