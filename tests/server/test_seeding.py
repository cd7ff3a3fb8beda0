"""Seeding a running server with chosen identities and groups (LocalServer.seed_*_async on both
storages; the synchronous seed_* twins on the embedded SQLite one)."""

from __future__ import annotations

import base64
import inspect
from pathlib import Path

import httpx
import pytest

from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.server import LocalServer, ServerConfig

from .conftest import APP, OTHER_APP, FakeClock, eventually, make_server
from .wire import WireClient

KEY = base64.b64encode(b"sixteen byte key").decode()


async def test_a_seeded_identity_logs_in_and_keeps_its_sequence_space(server: LocalServer) -> None:
    data = await server.seed_user_async(
        "alice", uuid=123456789, security_key=KEY, token="tok-alice", last_sequence=2 * 10**15
    )
    assert data["miUserId"] == "123456789"
    assert (data["miUserSecurityKey"], data["token"], data["appAccount"]) == (
        KEY,
        "tok-alice",
        "alice",
    )
    assert data["appId"] == str(APP.app_id)
    bob_answer = {"code": 200, "message": "success", "data": await server.seed_user_async("bob")}
    alice = WireClient(server.ws_url, "alice")
    bob = WireClient(server.ws_url, "bob")
    await alice.login({"code": 200, "message": "success", "data": data})
    await bob.login(bob_answer)
    alice.session.send_p2p("bob", "hi", now=alice.now())
    await alice.flush()
    ack = await alice.next(ServerAck)
    assert ack.sequence == 2 * 10**15 + 1  # continues above last_sequence (clock: 1.8e15)
    assert (await bob.next(P2PMessage)).text == "hi"
    await alice.close()
    await bob.close()


async def test_seeding_is_idempotent_and_refuses_conflicts(server: LocalServer) -> None:
    first = await server.seed_user_async("alice", uuid=42, security_key=KEY, token="t1")
    again = await server.seed_user_async("alice", token="t2")  # same identity, one more token
    assert (again["miUserId"], again["miUserSecurityKey"]) == ("42", KEY)
    assert await server.seed_user_async("alice", uuid=42, security_key=KEY, token="t1") == first
    with pytest.raises(ValueError, match="another identity"):
        await server.seed_user_async("alice", uuid=43)  # the account has uuid 42
    with pytest.raises(ValueError, match="another identity"):
        await server.seed_user_async("mallory", uuid=42)  # uuid 42 is alice's
    with pytest.raises(ValueError, match="another identity"):
        await server.seed_user_async("alice", security_key=base64.b64encode(b"x" * 16).decode())
    with pytest.raises(ValueError, match="another user"):
        await server.seed_user_async("bob", token="t1")  # alice's token
    with pytest.raises(ValueError, match="base64"):
        await server.seed_user_async("carol", security_key="not base64!")
    with pytest.raises(ValueError, match="63-bit"):
        await server.seed_user_async("carol", uuid=0)
    with pytest.raises(KeyError):
        await server.seed_user_async("carol", app=999)
    # A random identity for an account that is new; the same one later.
    carol = await server.seed_user_async("carol")
    assert (await server.seed_user_async("carol"))["miUserId"] == carol["miUserId"]
    # Same account name in another app: another user.
    other = await server.seed_user_async("alice", app=OTHER_APP)
    assert other["miUserId"] != "42"


async def test_seeded_groups_have_the_chosen_ids(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    token = (await server.seed_user_async("alice"))["token"]
    assert await server.seed_topic_async(7001, owner="alice", members=["bob"], name="g") == 7001
    answer = (await http.get(f"/api/topic/{APP.app_id}/7001", headers={"token": token})).json()
    assert answer["code"] == 200
    assert answer["data"]["topicInfo"]["topicName"] == "g"
    assert [m["account"] for m in answer["data"]["members"]] == ["alice", "bob"]
    assert await server.seed_uc_topic_async(7002, owner="alice", members=["bob"]) == 7002
    bob_token = (await server.seed_user_async("bob"))["token"]
    joined = (await http.get("/api/uctopic/topics", headers={"token": bob_token})).json()
    assert joined["data"] == ["7002"]
    with pytest.raises(ValueError, match="taken"):
        await server.seed_topic_async(7002, owner="alice")  # normal and unlimited groups share ids
    with pytest.raises(ValueError, match="taken"):
        await server.seed_uc_topic_async(7001, owner="alice")
    with pytest.raises(ValueError, match="at most"):  # the fixture's limit is 5
        await server.seed_topic_async(7003, owner="alice", members=[f"m{i}" for i in range(5)])


async def test_seeds_are_durable(storage_url: str, clock: FakeClock) -> None:
    async with make_server(storage_url, clock) as server:
        await server.seed_user_async(
            "alice", uuid=77, security_key=KEY, token="durable", last_sequence=5
        )
        await server.seed_topic_async(8001, owner="alice")
    async with make_server(storage_url, clock) as server:
        assert server.hub is not None
        storage = server.hub.storage
        user = await storage.find_user(APP.app_id, "alice")
        assert user is not None
        assert (user.uuid, user.security_key, user.last_seq) == (77, KEY, 5)
        found = await storage.lookup_token("durable")
        assert found is not None
        assert found[0].uuid == 77
        assert await storage.topic(8001) is not None


async def test_seeding_needs_a_running_server(tmp_path: Path) -> None:
    server = LocalServer(db=tmp_path / "x.db", apps=[APP])
    with pytest.raises(RuntimeError, match="running"):
        server.seed_user("alice")
    with pytest.raises(RuntimeError, match="running"):
        server.seed_topic(1, owner="alice")
    with pytest.raises(RuntimeError, match="running"):
        await server.seed_uc_topic_async(1, owner="alice")


@pytest.mark.sqlite_only
async def test_the_synchronous_twins_seed_the_sqlite_storage(server: LocalServer) -> None:
    data = server.seed_user("alice", uuid=42, security_key=KEY, token="t1")
    assert (data["miUserId"], data["token"]) == ("42", "t1")
    assert server.seed_topic(7001, owner="alice", members=["bob"]) == 7001
    assert server.seed_uc_topic(7002, owner="alice", members=["bob"]) == 7002
    assert server.hub is not None
    topic = await server.hub.storage.uc_topic(7002)
    assert topic is not None
    assert len(topic.members) == 2
    with pytest.raises(ValueError, match="another identity"):
        server.seed_user("alice", uuid=43)


async def test_the_synchronous_twins_name_the_async_ones_on_postgresql(
    server: LocalServer, storage_url: str
) -> None:
    if not storage_url.startswith("postgres"):
        pytest.skip("the synchronous twins work on SQLite")
    with pytest.raises(RuntimeError, match=r"seed_user_async\(") as refused:
        server.seed_user("alice")
    assert "synchronous" in str(refused.value)
    with pytest.raises(RuntimeError, match=r"seed_topic_async\("):
        server.seed_topic(7001, owner="alice")
    with pytest.raises(RuntimeError, match=r"seed_uc_topic_async\("):
        server.seed_uc_topic(7002, owner="alice")
    assert server.hub is not None
    assert await server.hub.storage.find_user(APP.app_id, "alice") is None  # nothing written


@pytest.mark.sqlite_only
async def test_injected_challenges_reach_the_conn_reply(tmp_path: Path) -> None:
    given = iter(["challenge-one", "challenge-two"])
    config = ServerConfig(challenges=lambda: next(given))
    async with LocalServer(db=tmp_path / "x.db", apps=[APP], config=config) as server:
        assert server.hub is not None
        for expected in ("challenge-one", "challenge-two"):
            client = WireClient(server.ws_url, "alice")
            data = server.seed_user("alice")
            await client.login({"code": 200, "message": "success", "data": data})  # signed over it
            assert [c.session.challenge for c in server.hub.connections] == [expected]
            await client.close()
            await eventually(lambda: not server.hub or not server.hub.connections)


@pytest.mark.parametrize("name", ["seed_user", "seed_topic", "seed_uc_topic"])
def test_each_synchronous_twin_takes_what_its_async_original_takes(name: str) -> None:
    twin = inspect.signature(getattr(LocalServer, name))
    original = inspect.signature(getattr(LocalServer, f"{name}_async"))
    assert twin.parameters == original.parameters
