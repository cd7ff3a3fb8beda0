"""The server deduplicates stored messages by (sender uuid, packet id) (issue 10).

A client that lost an ack with its connection sends the message again under the same packet id
(``MIMCUser``'s outbox). The server answers with the first ack (same sequence and timestamp) and
delivers nothing twice, across a restart too; unstored messages keep their at-most-once meaning
and are never deduplicated.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx

from mimc_rx.protocol.events import P2PMessage, P2TMessage, ServerAck
from mimc_rx.server import LocalServer
from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage import Store

from .conftest import APP, TIMEOUT, FakeClock, login_http, make_server
from .wire import WireClient

NOW_MS = 1_800_000_000_000


class Ids:
    """An id factory whose next id can be forced (to send a packet id again)."""

    def __init__(self) -> None:
        self._count: Iterator[int] = itertools.count(1)
        self.forced: str | None = None

    def __call__(self) -> str:
        if self.forced is not None:
            forced, self.forced = self.forced, None
            return forced
        return f"id-{next(self._count)}"


async def _client(
    server: LocalServer, account: str, ids: Ids | None = None, resource: str = "res-1"
) -> WireClient:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http:
        answer = (await login_http(http, account)).answer
    client = WireClient(server.ws_url, account, resource, ids=ids or Ids())
    await client.login(answer)
    return client


def _acks(client: WireClient, packet_id: str) -> list[ServerAck]:
    return [a for a in client.of(ServerAck) if a.packet_id == packet_id]


async def test_a_p2p_sent_again_gets_its_first_ack_and_is_delivered_once(
    server: LocalServer,
) -> None:
    ids = Ids()
    alice, bob = await _client(server, "alice", ids), await _client(server, "bob")
    first = alice.session.send_p2p("bob", b"once", now=alice.now())
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [one] = _acks(alice, first)
    await alice.close()
    # The next connection sends it again under its packet id, as the client's outbox does.
    alice = await _client(server, "alice", ids)
    ids.forced = first
    again = alice.session.send_p2p("bob", b"once", now=alice.now())
    assert again == first
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [two] = _acks(alice, first)
    assert (two.sequence, two.timestamp, two.err_msg) == (one.sequence, one.timestamp, "")
    await bob.barrier()
    assert [m.payload for m in bob.of(P2PMessage)] == [b"once"]
    await alice.close()
    await bob.close()


async def test_a_packet_id_sent_twice_on_one_connection_is_acked_once(server: LocalServer) -> None:
    # The server acks both copies alike; the client core emits the ack once (one per send).
    ids = Ids()
    alice, bob = await _client(server, "alice", ids), await _client(server, "bob")
    first = alice.session.send_p2p("bob", b"twice", now=alice.now())
    ids.forced = first
    alice.session.send_p2p("bob", b"twice", now=alice.now())
    await alice.flush()
    await alice.wait(lambda: alice.session.memory.duplicate_acks == 1)
    assert len(_acks(alice, first)) == 1
    await bob.barrier()
    assert [m.payload for m in bob.of(P2PMessage)] == [b"twice"]
    await alice.close()
    await bob.close()


async def test_a_group_message_sent_again_is_delivered_once(server: LocalServer) -> None:
    ids = Ids()
    alice, bob = await _client(server, "alice", ids), await _client(server, "bob")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http:
        token = (await login_http(http, "alice")).token
        created = await http.post(
            f"/api/topic/{APP.app_id}",
            headers={"token": token},
            json={"topicName": "t", "accounts": "bob"},
        )
    topic_id = int(created.json()["data"]["topicInfo"]["topicId"])
    first = alice.session.send_p2t(topic_id, b"group once", now=alice.now())
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [one] = _acks(alice, first)
    await alice.close()
    alice = await _client(server, "alice", ids)
    ids.forced = first
    alice.session.send_p2t(topic_id, b"group once", now=alice.now())
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [two] = _acks(alice, first)
    assert (two.sequence, two.timestamp) == (one.sequence, one.timestamp)
    await bob.barrier()
    assert [m.payload for m in bob.of(P2TMessage)] == [b"group once"]
    await alice.close()
    await bob.close()


async def test_two_devices_of_one_account_may_use_the_same_packet_id(server: LocalServer) -> None:
    # Web packet ids are "web" + ms + a counter (docs/protocol.md 6.2): two resources of one
    # account can make the same one. The dedup key includes the resource.
    phone_ids, laptop_ids = Ids(), Ids()
    phone = await _client(server, "alice", phone_ids, resource="phone")
    laptop = await _client(server, "alice", laptop_ids, resource="laptop")
    bob = await _client(server, "bob")
    phone_ids.forced = laptop_ids.forced = "web17000000000001"
    phone.session.send_p2p("bob", b"from the phone", now=phone.now())
    laptop.session.send_p2p("bob", b"from the laptop", now=laptop.now())
    await phone.flush()
    await laptop.flush()
    await phone.wait(lambda: _acks(phone, "web17000000000001"))
    await laptop.wait(lambda: _acks(laptop, "web17000000000001"))
    await bob.barrier()
    assert sorted(m.payload for m in bob.of(P2PMessage)) == [b"from the laptop", b"from the phone"]
    for client in (phone, laptop, bob):
        await client.close()


async def test_unstored_messages_are_not_deduplicated(server: LocalServer) -> None:
    ids = Ids()
    alice, bob = await _client(server, "alice", ids), await _client(server, "bob")
    first = alice.session.send_p2p("bob", b"live", is_store=False, now=alice.now())
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [one] = _acks(alice, first)
    await alice.close()
    alice = await _client(server, "alice", ids)
    ids.forced = first
    alice.session.send_p2p("bob", b"live", is_store=False, now=alice.now())
    await alice.flush()
    await alice.wait(lambda: _acks(alice, first))
    [two] = _acks(alice, first)
    assert one.sequence != two.sequence  # at most once each: two sends, two messages
    await bob.barrier()
    assert [m.payload for m in bob.of(P2PMessage)] == [b"live", b"live"]
    await alice.close()
    await bob.close()


async def test_the_dedup_record_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "chat.db"
    ids = Ids()
    async with make_server(db, clock) as server:
        alice = await _client(server, "alice", ids)
        first = alice.session.send_p2p("bob", b"before", now=alice.now())
        await alice.flush()
        await alice.wait(lambda: _acks(alice, first))
        original = _acks(alice, first)[0]
        await alice.close()
    async with make_server(db, clock) as server:
        ids.forced = None
        alice = await _client(server, "alice", ids)
        ids.forced = first
        alice.session.send_p2p("bob", b"before", now=alice.now())
        await alice.flush()
        await alice.wait(lambda: _acks(alice, first))
        assert _acks(alice, first)[0].sequence == original.sequence
        bob = await _client(server, "bob")
        await bob.barrier()
        assert [m.payload for m in bob.of(P2PMessage)] == [b"before"]
        await alice.close()
        await bob.close()


def test_store_find_sent_covers_the_open_tick_and_pruning(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    app = AppConfig(app_id=77, app_key="k", app_secret="s", package="pkg")
    alice, bob = store.ensure_user(77, "alice"), store.ensure_user(77, "bob")

    def send(packet_id: str, ts: int) -> int:
        sender_seq, _ = store.record_p2p(
            app=app,
            packet_id=packet_id,
            sender=alice,
            from_resource="r",
            recipient=bob,
            payload=b"x",
            biz_type="",
            ts=ts,
        )
        return sender_seq

    old = send("old", NOW_MS)
    assert store.find_sent(alice.uuid, "old") == (old, NOW_MS)  # before the commit
    assert store.find_sent(alice.uuid, "old", "r") == (old, NOW_MS)
    assert store.find_sent(alice.uuid, "old", "other resource") is None
    assert store.find_sent(bob.uuid, "old") is None  # keyed by sender
    store.commit()
    new = send("new", NOW_MS + 10_000)
    store.commit()
    store.close()
    store = Store(tmp_path / "s.db")
    assert store.find_sent(alice.uuid, "old") == (old, NOW_MS)
    assert store.find_sent(alice.uuid, "old", "r") == (old, NOW_MS)
    assert store.find_sent(alice.uuid, "old", "other resource") is None
    assert store.prune_sent(NOW_MS + 5_000) == 1
    store.commit()
    assert store.find_sent(alice.uuid, "old") is None
    assert store.find_sent(alice.uuid, "new") == (new, NOW_MS + 10_000)
    store.close()
