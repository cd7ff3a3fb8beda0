"""Two and three server processes on one PostgreSQL and one Redis, each user pinned to a process.

alice on #0, bob on #1 (carol on #2): everything a single server does between them must work
when the hop between them is Redis (docs/scale-out.md): one-to-one messages both ways, a group's
fan-out, an unlimited group, offline messages picked up on another process, the history read
from any process, and the newer login of a resource kicking the older one on another process.
"""

from __future__ import annotations

import asyncio
import base64

from mimc_rx import MIMCUser
from mimc_rx.client.values import Disconnected, DisconnectReason
from mimc_rx.protocol.events import P2PMessage, UCJoinResult, UCMessage
from tests.testing.test_process import _history as history  # the P2P history over HTTP

from .conftest import TIMEOUT, StartCluster, eventually, offline, online, user


async def _barrier(sender: MIMCUser, receiver: MIMCUser, got: list[P2PMessage]) -> None:
    """A last message on the same path: whatever ``sender`` sent before it has arrived."""
    sender.send_message(receiver.app_account, "barrier")
    await eventually(lambda: any(m.text == "barrier" for m in got))


async def test_p2p_both_ways_and_the_history_from_either_process(cluster: StartCluster) -> None:
    nodes = await cluster(2)
    # bob's token is issued by #0 and verified by #1: the token service is any process.
    alice, bob = user(nodes[0], "alice"), user(nodes[1], "bob", token_from=nodes[0])
    await online(alice, bob)
    waiting = asyncio.ensure_future(bob.next_message(from_account="alice", timeout=TIMEOUT))
    alice.send_message("bob", "hello from #0")
    to_bob = await waiting
    waiting = asyncio.ensure_future(alice.next_message(from_account="bob", timeout=TIMEOUT))
    bob.send_message("alice", "hello from #1")
    to_alice = await waiting
    assert (to_bob.text, to_bob.from_account) == ("hello from #0", "alice")
    assert (to_alice.text, to_alice.from_account) == ("hello from #1", "bob")
    for node in nodes:
        stored = await history(node, "bob", "alice")
        texts = [base64.b64decode(m["payload"]).decode() for m in stored]
        assert texts == ["hello from #0", "hello from #1"], node
    await offline(alice, bob)


async def test_group_fan_out_across_three_processes(cluster: StartCluster) -> None:
    nodes = await cluster(3)
    alice, bob, carol = (user(n, a) for n, a in zip(nodes, ("alice", "bob", "carol"), strict=True))
    await online(alice, bob, carol)
    topic = await alice.create_group("three nodes", ["bob", "carol"])
    arrivals = [
        asyncio.ensure_future(u.next_message(topic_id=topic, timeout=TIMEOUT)) for u in (bob, carol)
    ]
    alice.send_group_message(topic, "to everyone")
    assert [(m.text, m.from_account) for m in await asyncio.gather(*arrivals)] == [
        ("to everyone", "alice")
    ] * 2
    arrivals = [
        asyncio.ensure_future(u.next_message(topic_id=topic, timeout=TIMEOUT)) for u in (alice, bob)
    ]
    carol.send_group_message(topic, "from #2")
    assert [m.text for m in await asyncio.gather(*arrivals)] == ["from #2"] * 2
    await offline(alice, bob, carol)


async def test_an_unlimited_group_across_three_processes(cluster: StartCluster) -> None:
    nodes = await cluster(3)
    alice, bob, carol = (user(n, a) for n, a in zip(nodes, ("alice", "bob", "carol"), strict=True))
    await online(alice, bob, carol)
    room = await alice.create_unlimited_group("room", join=True)
    joins: list[UCJoinResult] = []
    got: dict[str, list[UCMessage]] = {"alice": [], "bob": [], "carol": []}
    for u in (alice, bob, carol):
        u.uc_messages.subscribe(got[u.app_account].append)
    for u in (bob, carol):
        u.uc_join_results.subscribe(joins.append)
        u.join_unlimited_group(room)
    await eventually(lambda: len(joins) == 2)
    assert all(j.ok for j in joins), joins
    alice.send_unlimited_group_message(room, "to the room")
    await eventually(lambda: got["bob"] and got["carol"])
    bob.send_unlimited_group_message(room, "from #1")
    await eventually(lambda: len(got["carol"]) == 2)
    carol.send_unlimited_group_message(room, "end")  # a barrier for alice and bob
    await eventually(lambda: all(got[a] and got[a][-1].text == "end" for a in ("alice", "bob")))
    # The sending connection gets no copy of its own message (as on one server).
    assert [m.text for m in got["carol"]] == ["to the room", "from #1"]
    assert [m.text for m in got["alice"]] == ["from #1", "end"]
    assert [m.text for m in got["bob"]] == ["to the room", "end"]
    await offline(alice, bob, carol)


async def test_offline_messages_are_picked_up_on_another_process(cluster: StartCluster) -> None:
    nodes = await cluster(2)
    alice = user(nodes[0], "alice")
    bob_first = user(nodes[0], "bob")
    await online(alice, bob_first)
    seen: list[P2PMessage] = []
    bob_first.p2p_messages.subscribe(seen.append)
    alice.send_message("bob", "while bob is on #0")
    await eventually(lambda: seen)
    await bob_first.logout()
    await offline(bob_first)
    for i in range(5):
        await alice.ack(alice.send_message("bob", f"offline {i}"))
    bob = user(nodes[1], "bob")
    got: list[P2PMessage] = []
    bob.p2p_messages.subscribe(got.append)
    await online(bob)
    await eventually(lambda: len(got) == 5)
    await _barrier(alice, bob, got)
    # Exactly the backlog: the message bob acknowledged on #0 is not delivered again on #1.
    assert [m.text for m in got] == [f"offline {i}" for i in range(5)] + ["barrier"]
    await offline(alice, bob)


async def test_the_newer_login_on_another_process_kicks_the_older(cluster: StartCluster) -> None:
    nodes = await cluster(2)
    first = user(nodes[0], "alice", resource="tab")
    drops: list[Disconnected] = []
    first.disconnects.subscribe(drops.append)
    await online(first)
    second = user(nodes[1], "alice", resource="tab")
    await online(second)
    await eventually(lambda: drops)
    assert drops[0].reason is DisconnectReason.KICKED, drops
    assert not first.is_logged_in
    # The newer connection is the one that receives: bob's message reaches #1, not #0.
    bob = user(nodes[0], "bob")
    await online(bob)
    waiting = asyncio.ensure_future(second.next_message(from_account="bob", timeout=TIMEOUT))
    bob.send_message("alice", "to the newer tab")
    assert (await waiting).text == "to the newer tab"
    assert second.is_logged_in
    await offline(first, second, bob)
