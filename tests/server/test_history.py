"""The history APIs (docs/protocol.md 8.4) over messages sent through the websocket."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from mimc_rx.protocol.events import P2PMessage, P2TMessage, ServerAck
from mimc_rx.server import LocalServer

from .conftest import APP, FakeClock, login_http
from .wire import WireClient


async def _query(http: httpx.AsyncClient, path: str, token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("appId", str(APP.app_id))
    answer: dict[str, Any] = (
        await http.post(f"/api/msg/{path}", headers={"token": token}, json=body)
    ).json()
    return answer


async def test_history_sees_only_own_conversations(
    server: LocalServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    accounts = {name: await login_http(http, name) for name in ("alice", "bob", "carol")}
    clients = {name: WireClient(server.ws_url, name) for name in accounts}
    for name, client in clients.items():
        await client.login(accounts[name].answer)
    alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
    topic = int(
        (
            await http.post(
                f"/api/topic/{APP.app_id}",
                headers={"token": accounts["alice"].token},
                json={"topicName": "g", "accounts": "bob"},
            )
        ).json()["data"]["topicInfo"]["topicId"]
    )
    t0 = server.config.now_ms()
    alice.session.send_p2p("bob", "a1", now=alice.now())
    alice.session.send_p2p("bob", "volatile", is_store=False, now=alice.now())
    alice.session.send_p2t(topic, "g1", now=alice.now())
    await alice.flush()
    a1_ack = await alice.next(ServerAck)
    await alice.next(ServerAck, 3)
    clock.advance(1)
    bob.session.send_p2p("alice", "b1", now=bob.now())
    await bob.flush()
    b1_at_alice = await alice.next(P2PMessage)
    carol.session.send_p2p("bob", "c1", now=carol.now())
    await carol.flush()
    await bob.wait(lambda: len(bob.of(P2PMessage)) == 3 and len(bob.of(P2TMessage)) == 1)
    t1 = server.config.now_ms() + 1
    alice_token, carol_token = accounts["alice"].token, accounts["carol"].token

    page = await _query(
        http,
        "p2p/queryOnTime",
        alice_token,
        fromAccount="alice",
        toAccount="bob",
        utcFromTime=t0,
        utcToTime=t1,
    )
    assert page["code"] == 200, page
    data = page["data"]
    assert data["appId"] == str(APP.app_id)
    assert data["row"] == 2
    messages = data["messages"]
    assert [base64.b64decode(m["payload"]) for m in messages] == [b"a1", b"b1"]
    assert [(m["fromAccount"], m["toAccount"]) for m in messages] == [
        ("alice", "bob"),
        ("bob", "alice"),
    ]
    # Sequences as alice's client saw them: her ack for a1, her delivery of b1.
    assert [m["sequence"] for m in messages] == [str(a1_ack.sequence), str(b1_at_alice.sequence)]
    assert data["timestamp"] == str(t0)
    # The other direction of the same conversation, asked the other way round.
    same = await _query(
        http,
        "p2p/query/",
        alice_token,
        fromAccount="bob",
        toAccount="alice",
        utcFromTime=t0,
        utcToTime=t1,
    )
    assert same["data"]["messages"] == messages

    newest = await _query(
        http,
        "p2p/queryOnCount/",
        alice_token,
        fromAccount="alice",
        toAccount="bob",
        utcToTime=t1,
        count=1,
    )
    assert [m["payload"] for m in newest["data"]["messages"]] == [messages[1]["payload"]]
    by_seq = await _query(
        http,
        "p2p/queryOnSequence/",
        alice_token,
        fromAccount="alice",
        toAccount="bob",
        startSeq=a1_ack.sequence,
        stopSeq=a1_ack.sequence + 1,
    )
    assert [m["sequence"] for m in by_seq["data"]["messages"]] == [str(a1_ack.sequence)]

    # Not alice's conversation; wrong app; no credentials; too wide a range.
    assert (
        await _query(
            http,
            "p2p/queryOnTime",
            alice_token,
            fromAccount="bob",
            toAccount="carol",
            utcFromTime=t0,
            utcToTime=t1,
        )
    )["code"] == 403
    assert (
        await _query(
            http,
            "p2p/queryOnTime",
            alice_token,
            appId="1",
            fromAccount="alice",
            toAccount="bob",
            utcFromTime=t0,
            utcToTime=t1,
        )
    )["code"] == 403
    assert (
        await _query(
            http,
            "p2p/queryOnTime",
            "junk",
            fromAccount="alice",
            toAccount="bob",
            utcFromTime=t0,
            utcToTime=t1,
        )
    )["code"] == 401
    assert (
        await _query(
            http,
            "p2p/queryOnTime",
            alice_token,
            fromAccount="alice",
            toAccount="bob",
            utcFromTime=t0,
            utcToTime=t0 + 25 * 3600 * 1000,
        )
    )["code"] == 400

    group = await _query(
        http,
        "p2t/queryOnTime/",
        alice_token,
        account="alice",
        topicId=str(topic),
        utcFromTime=t0,
        utcToTime=t1,
    )
    assert group["data"]["topicId"] == str(topic)
    assert [base64.b64decode(m["payload"]) for m in group["data"]["messages"]] == [b"g1"]
    bob_group = await _query(
        http,
        "p2t/queryOnCount",
        accounts["bob"].token,
        account="bob",
        topicId=topic,
        utcToTime=t1,
        count=10,
    )
    bob_seq = bob.of(P2TMessage)[0].sequence
    assert [m["sequence"] for m in bob_group["data"]["messages"]] == [str(bob_seq)]
    # carol was never in the group: nothing to see, and she cannot ask as alice.
    outsider = await _query(
        http,
        "p2t/queryOnTime",
        carol_token,
        account="carol",
        topicId=topic,
        utcFromTime=t0,
        utcToTime=t1,
    )
    assert outsider["data"]["messages"] == []
    assert (
        await _query(
            http,
            "p2t/queryOnTime",
            carol_token,
            account="alice",
            topicId=topic,
            utcFromTime=t0,
            utcToTime=t1,
        )
    )["code"] == 403
    for client in clients.values():
        await client.close()
