"""The Storage protocol's meaning, one suite run on SQLite (the adapter) and on PostgreSQL.

Every test takes the parametrized ``storage``/``opener`` fixtures, so a difference between the
engines is a failing test, not a comment.
"""

from __future__ import annotations

import pytest

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage.interface import (
    CursorMoved,
    CursorWrite,
    Intent,
    Outcome,
    P2PWrite,
    P2PWritten,
    P2TWrite,
    P2TWritten,
    Refusal,
    Storage,
    UCWrite,
    UCWritten,
)
from mimc_rx.server.storage.records import MessageKind, User

from .conftest import APP, OTHER_APP, Opener

T0 = 1_800_000_000_000
"""A wall time in ms; sequences are at least ``ts * 1000``."""


def p2p(
    sender: User, to: str, pid: str, *, ts: int = T0, persist: bool = True, resource: str = "phone"
) -> P2PWrite:
    return P2PWrite(
        app=APP,
        packet_id=pid,
        sender=sender,
        from_resource=resource,
        to_account=to,
        payload=pid.encode(),
        biz_type="text",
        ts=ts,
        persist=persist,
    )


def p2t(sender: User, topic_id: int, pid: str, *, ts: int = T0, app: AppConfig = APP) -> P2TWrite:
    return P2TWrite(
        app=app,
        packet_id=pid,
        sender=sender,
        from_resource="phone",
        topic_id=topic_id,
        payload=pid.encode(),
        ts=ts,
    )


async def one(storage: Storage, intent: Intent) -> Outcome:
    (outcome,) = await storage.write_tick([intent])
    return outcome


async def users(storage: Storage, *accounts: str) -> list[User]:
    return [await storage.ensure_user(APP.app_id, a) for a in accounts]


# ---------------------------------------------------------------------------- users, tokens


async def test_users_are_created_once_and_found(storage: Storage) -> None:
    alice = await storage.ensure_user(APP.app_id, "alice")
    again = await storage.ensure_user(APP.app_id, "alice")
    other_app = await storage.ensure_user(OTHER_APP.app_id, "alice")
    assert again.uuid == alice.uuid
    assert again.security_key == alice.security_key
    assert other_app.uuid != alice.uuid
    assert await storage.find_user(APP.app_id, "alice") == again
    assert await storage.find_user(APP.app_id, "nobody") is None
    found = await storage.user(alice.uuid)
    assert found is not None
    assert found.account == "alice"
    assert set(await storage.users([alice.uuid, other_app.uuid, 1])) == {
        alice.uuid,
        other_app.uuid,
    }
    assert await storage.count_users() == 2


async def test_import_user_keeps_the_identity_and_refuses_conflicts(storage: Storage) -> None:
    key = "AAECAwQFBgcICQoLDA0ODw=="
    bob = await storage.import_user(APP.app_id, "bob", uuid=123, security_key=key, last_seq=50)
    assert (bob.uuid, bob.security_key) == (123, key)
    again = await storage.import_user(APP.app_id, "bob", uuid=123, security_key=key, last_seq=90)
    assert again.uuid == 123
    with pytest.raises(ValueError, match="another identity"):
        await storage.import_user(APP.app_id, "bob", uuid=124, security_key=key)
    with pytest.raises(ValueError, match="another identity"):
        await storage.import_user(APP.app_id, "carol", uuid=123, security_key=key)
    with pytest.raises(ValueError, match="base64"):
        await storage.import_user(APP.app_id, "dave", uuid=125, security_key="not base64!")
    # last_seq was raised to 90: the next sequence is above it, whatever the clock says.
    sender = (await users(storage, "alice"))[0]
    written = await one(storage, p2p(sender, "bob", "p1", ts=0))
    assert isinstance(written, P2PWritten)
    assert written.recipient_seq == 91


async def test_tokens(storage: Storage) -> None:
    (alice,) = await users(storage, "alice")
    await storage.add_token("tok", alice.uuid, 1000.0)
    found = await storage.lookup_token("tok")
    assert found is not None
    assert (found[0].uuid, found[1]) == (alice.uuid, 1000.0)
    assert await storage.lookup_token("nope") is None
    assert await storage.prune_tokens(1000.0 + 3600) == 0  # kept a week to say "expired"
    assert await storage.prune_tokens(1000.0 + 8 * 24 * 3600) == 1
    assert await storage.lookup_token("tok") is None


# ---------------------------------------------------------------------------- P2P and sequences


async def test_p2p_sequences_and_backlog(storage: Storage) -> None:
    alice, bob = await users(storage, "alice", "bob")
    outcomes = await storage.write_tick([p2p(alice, "bob", f"p{i}") for i in range(3)])
    written = [o for o in outcomes if isinstance(o, P2PWritten)]
    assert len(written) == 3
    seqs = [w.recipient_seq for w in written]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] >= T0 * 1000  # the time-based floor of the sequence rule
    assert all(w.recipient.uuid == bob.uuid and not w.duplicate for w in written)
    assert [w.sender_seq for w in written] == sorted({w.sender_seq for w in written})
    backlog = await storage.backlog(bob.uuid, 0, 10)
    assert [m.seq for m in backlog] == seqs
    assert [m.packet_id for m in backlog] == ["p0", "p1", "p2"]
    first = backlog[0]
    assert first.kind is MessageKind.P2P
    assert (first.from_uuid, first.from_account, first.from_resource) == (
        alice.uuid,
        "alice",
        "phone",
    )
    assert (first.to_uuid, first.to_account, first.payload, first.biz_type) == (
        bob.uuid,
        "bob",
        b"p0",
        "text",
    )
    assert first.package == APP.package
    assert first.sender_seq == written[0].sender_seq
    assert await storage.backlog_summary(bob.uuid, 0) == (3, seqs[0], seqs[2])
    assert await storage.backlog_summary(bob.uuid, seqs[0]) == (2, seqs[1], seqs[2])
    assert await storage.backlog(bob.uuid, seqs[0], 1) == backlog[1:2]
    assert await storage.backlog_summary(alice.uuid, 0) == (0, 0, 0)


async def test_sequences_never_go_back_with_the_clock(storage: Storage) -> None:
    alice, _ = await users(storage, "alice", "bob")
    later = await one(storage, p2p(alice, "bob", "a", ts=T0 + 10_000))
    earlier = await one(storage, p2p(alice, "bob", "b", ts=T0))
    assert isinstance(later, P2PWritten)
    assert isinstance(earlier, P2PWritten)
    assert earlier.recipient_seq == later.recipient_seq + 1
    assert earlier.sender_seq == later.sender_seq + 1


async def test_a_new_recipient_is_created_and_self_messages_share_one_sequence(
    storage: Storage,
) -> None:
    (alice,) = await users(storage, "alice")
    to_new = await one(storage, p2p(alice, "newcomer", "n"))
    assert isinstance(to_new, P2PWritten)
    assert await storage.find_user(APP.app_id, "newcomer") == to_new.recipient
    to_self = await one(storage, p2p(alice, "alice", "s"))
    assert isinstance(to_self, P2PWritten)
    assert to_self.sender_seq == to_self.recipient_seq
    assert [m.packet_id for m in await storage.backlog(alice.uuid, 0, 10)] == ["s"]


async def test_unstored_messages_are_sequenced_not_stored_nor_deduplicated(
    storage: Storage,
) -> None:
    alice, bob = await users(storage, "alice", "bob")
    a = await one(storage, p2p(alice, "bob", "u", persist=False))
    b = await one(storage, p2p(alice, "bob", "u", persist=False))
    assert isinstance(a, P2PWritten)
    assert isinstance(b, P2PWritten)
    assert not b.duplicate
    assert b.recipient_seq > a.recipient_seq
    assert await storage.backlog(bob.uuid, 0, 10) == []


async def test_dedup_returns_the_original_ack_and_delivers_nothing_again(
    storage: Storage, opener: Opener
) -> None:
    alice, bob = await users(storage, "alice", "bob")
    first = await one(storage, p2p(alice, "bob", "pid-1", ts=T0))
    again = await one(storage, p2p(alice, "bob", "pid-1", ts=T0 + 5000))
    assert isinstance(first, P2PWritten)
    assert isinstance(again, P2PWritten)
    assert again.duplicate
    assert (again.sender_seq, again.ts, again.recipient.uuid) == (
        first.sender_seq,
        first.ts,
        bob.uuid,
    )
    # Twice in one tick: the second is the duplicate of the first.
    pair = await storage.write_tick([p2p(alice, "bob", "pid-2"), p2p(alice, "bob", "pid-2")])
    assert isinstance(pair[0], P2PWritten)
    assert isinstance(pair[1], P2PWritten)
    assert (pair[0].duplicate, pair[1].duplicate) == (False, True)
    assert pair[1].sender_seq == pair[0].sender_seq
    # Another sender may use the same packet id.
    (carol,) = await users(storage, "carol")
    theirs = await one(storage, p2p(carol, "bob", "pid-1"))
    assert isinstance(theirs, P2PWritten)
    assert not theirs.duplicate
    assert [m.packet_id for m in await storage.backlog(bob.uuid, 0, 10)] == [
        "pid-1",
        "pid-2",
        "pid-1",
    ]
    # The record is durable: another handle (a restart, another process) knows it.
    other = await opener()
    sender = await other.find_user(APP.app_id, "alice")
    assert sender is not None
    late = await one(other, p2p(sender, "bob", "pid-1"))
    assert isinstance(late, P2PWritten)
    assert late.duplicate
    assert late.sender_seq == first.sender_seq


async def test_dedup_is_per_sending_resource(storage: Storage) -> None:
    # Issue 10: two devices of one account may make the same web packet id.
    alice, _ = await users(storage, "alice", "bob")
    phone = await one(storage, p2p(alice, "bob", "pid-1"))
    laptop = await one(storage, p2p(alice, "bob", "pid-1", resource="laptop"))
    again = await one(storage, p2p(alice, "bob", "pid-1", resource="laptop"))
    assert isinstance(phone, P2PWritten)
    assert isinstance(laptop, P2PWritten)
    assert isinstance(again, P2PWritten)
    assert (phone.duplicate, laptop.duplicate, again.duplicate) == (False, False, True)
    assert again.sender_seq == laptop.sender_seq != phone.sender_seq


async def test_a_failed_tick_stores_nothing(storage: Storage) -> None:
    alice, bob = await users(storage, "alice", "bob")
    ghost = User(uuid=42, app_id=APP.app_id, account="ghost", security_key="AA==")
    with pytest.raises(Exception):  # noqa: B017, PT011 (the engines raise different types)
        await storage.write_tick([p2p(alice, "bob", "kept?"), p2p(ghost, "bob", "boom")])
    assert await storage.backlog(bob.uuid, 0, 10) == []
    ok = await one(storage, p2p(alice, "bob", "kept?"))
    assert isinstance(ok, P2PWritten)
    assert not ok.duplicate


# ---------------------------------------------------------------------------- cursors


async def test_cursors(storage: Storage) -> None:
    alice, bob = await users(storage, "alice", "bob")
    assert await storage.cursor(bob.uuid, "phone") is None
    assert await storage.open_cursor(bob.uuid, "phone") == 0
    outcomes = await storage.write_tick([p2p(alice, "bob", f"p{i}") for i in range(3)])
    seqs = [o.recipient_seq for o in outcomes if isinstance(o, P2PWritten)]
    assert await storage.advance_cursor(bob.uuid, "phone", seqs[1]) == seqs[1]
    assert await storage.advance_cursor(bob.uuid, "phone", seqs[0]) == seqs[1]  # never back
    # Never beyond the last issued sequence: that would hide future messages.
    assert await storage.advance_cursor(bob.uuid, "phone", seqs[2] + 10**9) == seqs[2]
    assert await storage.cursor(bob.uuid, "phone") == seqs[2]
    # A new resource starts where the user's most advanced one is.
    assert await storage.open_cursor(bob.uuid, "laptop") == seqs[2]
    assert await storage.open_cursor(bob.uuid, "phone") == seqs[2]
    # Unknown users have no cursor to move.
    assert await storage.advance_cursor(999, "x", 5) == 0


async def test_cursor_writes_in_a_tick(storage: Storage) -> None:
    alice, bob = await users(storage, "alice", "bob")
    sent = await one(storage, p2p(alice, "bob", "p"))
    assert isinstance(sent, P2PWritten)
    await storage.open_cursor(bob.uuid, "phone")
    moved = await storage.write_tick(
        [CursorWrite(uuid=bob.uuid, resource="phone", sequence=sent.recipient_seq)]
    )
    assert moved == [CursorMoved(uuid=bob.uuid, resource="phone", acked=sent.recipient_seq)]
    assert await storage.backlog_summary(bob.uuid, sent.recipient_seq) == (0, 0, 0)


# ---------------------------------------------------------------------------- groups


async def test_group_messages(storage: Storage) -> None:
    alice, bob, carol, dave = await users(storage, "alice", "bob", "carol", "dave")
    topic = await storage.create_topic(
        app_id=APP.app_id, name="g", owner=alice.uuid, members=[bob.uuid, carol.uuid], now_ms=T0
    )
    assert list(topic.members) == [alice.uuid, bob.uuid, carol.uuid]
    written = await one(storage, p2t(alice, topic.topic_id, "g1"))
    assert isinstance(written, P2TWritten)
    assert written.refusal is None
    assert [m for m, _ in written.sequences] == [alice.uuid, bob.uuid, carol.uuid]
    assert written.sequences[0][1] == written.sender_seq
    (bob_msg,) = await storage.backlog(bob.uuid, 0, 10)
    assert (bob_msg.kind, bob_msg.topic_id, bob_msg.seq) == (
        MessageKind.P2T,
        topic.topic_id,
        dict(written.sequences)[bob.uuid],
    )
    assert await storage.backlog(alice.uuid, 0, 10) == []  # the sender's copy is not an inbox row
    refused = await one(storage, p2t(dave, topic.topic_id, "g2"))
    assert isinstance(refused, P2TWritten)
    assert refused.refusal is Refusal.NOT_MEMBER
    assert refused.sequences == ()
    missing = await one(storage, p2t(alice, 777, "g3"))
    assert isinstance(missing, P2TWritten)
    assert missing.refusal is Refusal.NO_TOPIC
    other_app = await one(storage, p2t(alice, topic.topic_id, "g4", app=OTHER_APP))
    assert isinstance(other_app, P2TWritten)
    assert other_app.refusal is Refusal.NO_TOPIC
    dup = await one(storage, p2t(alice, topic.topic_id, "g1"))
    assert isinstance(dup, P2TWritten)
    assert dup.duplicate
    assert dup.sender_seq == written.sender_seq
    assert len(await storage.backlog(bob.uuid, 0, 10)) == 1


async def test_group_management(storage: Storage) -> None:
    alice, bob, carol = await users(storage, "alice", "bob", "carol")
    topic = await storage.create_topic(
        app_id=APP.app_id, name="g", owner=alice.uuid, members=[bob.uuid], now_ms=T0, topic_id=55
    )
    assert topic.topic_id == 55
    with pytest.raises(ValueError, match="taken"):
        await storage.create_topic(
            app_id=APP.app_id, name="h", owner=bob.uuid, members=[], now_ms=T0, topic_id=55
        )
    with pytest.raises(ValueError, match="taken"):
        await storage.create_uc_topic(
            app_id=APP.app_id, name="u", owner=bob.uuid, now_ms=T0, topic_id=55
        )
    assert await storage.add_members(55, [carol.uuid, bob.uuid], now_ms=T0 + 1) == [carol.uuid]
    assert await storage.remove_members(55, [bob.uuid, 12345]) == [bob.uuid]
    updated = await storage.update_topic(55, name="renamed", bulletin="hi", owner=carol.uuid)
    assert updated is not None
    assert (updated.name, updated.bulletin, updated.owner_uuid) == ("renamed", "hi", carol.uuid)
    assert list(updated.members) == [alice.uuid, carol.uuid]
    assert [t.topic_id for t in await storage.topics_of(carol.uuid)] == [55]
    assert await storage.topics_of(bob.uuid) == []
    # A snapshot: changing it changes nothing stored.
    updated.members[bob.uuid] = None
    fresh = await storage.topic(55)
    assert fresh is not None
    assert bob.uuid not in fresh.members
    assert await storage.update_topic(56, name="x") is None
    assert await storage.add_members(56, [bob.uuid], now_ms=T0) == []
    assert await storage.delete_topic(55)
    assert not await storage.delete_topic(55)
    assert await storage.topic(55) is None
    assert await storage.topics_of(alice.uuid) == []


async def test_unlimited_groups(storage: Storage) -> None:
    alice, bob, carol = await users(storage, "alice", "bob", "carol")
    uc = await storage.create_uc_topic(app_id=APP.app_id, name="u", owner=alice.uuid, now_ms=T0)
    assert list(uc.members) == [alice.uuid]
    assert await storage.uc_join(uc.topic_id, bob.uuid)
    assert not await storage.uc_join(uc.topic_id, bob.uuid)
    assert not await storage.uc_join(4242, bob.uuid)
    first, second, refused, missing = await storage.write_tick(
        [
            UCWrite(app_id=APP.app_id, sender_uuid=alice.uuid, topic_id=uc.topic_id, ts=T0),
            UCWrite(app_id=APP.app_id, sender_uuid=bob.uuid, topic_id=uc.topic_id, ts=T0),
            UCWrite(app_id=APP.app_id, sender_uuid=carol.uuid, topic_id=uc.topic_id, ts=T0),
            UCWrite(app_id=OTHER_APP.app_id, sender_uuid=alice.uuid, topic_id=uc.topic_id, ts=T0),
        ]
    )
    assert isinstance(first, UCWritten)
    assert isinstance(second, UCWritten)
    assert first.sequence >= T0 * 1000
    assert second.sequence == first.sequence + 1
    assert list(first.members) == [alice.uuid, bob.uuid]
    assert refused == UCWritten(sequence=0, refusal=Refusal.NOT_MEMBER)
    assert missing == UCWritten(sequence=0, refusal=Refusal.NO_TOPIC)
    assert [t.topic_id for t in await storage.uc_topics_of(bob.uuid)] == [uc.topic_id]
    assert await storage.uc_quit(uc.topic_id, bob.uuid)
    assert not await storage.uc_quit(uc.topic_id, bob.uuid)
    stored = await storage.uc_topic(uc.topic_id)
    assert stored is not None
    assert stored.last_seq == second.sequence
    assert await storage.delete_uc_topic(uc.topic_id) == (alice.uuid,)
    assert await storage.uc_topic(uc.topic_id) is None
    assert await storage.delete_uc_topic(uc.topic_id) == ()


# ---------------------------------------------------------------------------- history, contacts


async def test_history(storage: Storage) -> None:
    alice, bob, carol = await users(storage, "alice", "bob", "carol")
    await one(storage, p2p(alice, "bob", "a1", ts=T0))
    await one(storage, p2p(bob, "alice", "b1", ts=T0 + 10))
    await one(storage, p2p(alice, "carol", "c1", ts=T0 + 20))
    await one(storage, p2p(alice, "bob", "a2", ts=T0 + 30))
    seen = await storage.history(alice.uuid, other=bob.uuid)
    assert [m.packet_id for m in seen] == ["a1", "b1", "a2"]
    # seq is in alice's space: her sender sequence, or her inbox sequence.
    assert seen[0].seq == seen[0].sender_seq
    assert seen[1].seq > seen[0].seq
    assert [m.packet_id for m in await storage.history(bob.uuid, other=alice.uuid)] == [
        "a1",
        "b1",
        "a2",
    ]
    ranged = await storage.history(alice.uuid, other=bob.uuid, from_ts=T0 + 10, to_ts=T0 + 30)
    assert [m.packet_id for m in ranged] == ["b1"]
    newest = await storage.history(alice.uuid, other=bob.uuid, limit=2, newest=True)
    assert [m.packet_id for m in newest] == ["b1", "a2"]
    by_seq = await storage.history(
        alice.uuid, other=bob.uuid, start_seq=seen[1].seq, stop_seq=seen[2].seq
    )
    assert [m.packet_id for m in by_seq] == ["b1"]
    topic = await storage.create_topic(
        app_id=APP.app_id, name="g", owner=alice.uuid, members=[bob.uuid], now_ms=T0
    )
    await one(storage, p2t(bob, topic.topic_id, "g1", ts=T0 + 40))
    await storage.add_members(topic.topic_id, [carol.uuid], now_ms=T0 + 41)
    await one(storage, p2t(alice, topic.topic_id, "g2", ts=T0 + 50))
    assert [m.packet_id for m in await storage.history(alice.uuid, topic_id=topic.topic_id)] == [
        "g1",
        "g2",
    ]
    # carol joined after g1: only what she received.
    assert [m.packet_id for m in await storage.history(carol.uuid, topic_id=topic.topic_id)] == [
        "g2"
    ]


async def test_recent_contacts(storage: Storage) -> None:
    alice, bob, carol = await users(storage, "alice", "bob", "carol")
    await one(storage, p2p(alice, "bob", "a1", ts=T0))
    await one(storage, p2p(carol, "alice", "c1", ts=T0 + 10))
    await one(storage, p2p(bob, "alice", "b1", ts=T0 + 20))
    topic = await storage.create_topic(
        app_id=APP.app_id, name="g", owner=carol.uuid, members=[alice.uuid], now_ms=T0
    )
    await one(storage, p2t(carol, topic.topic_id, "g1", ts=T0 + 30))
    contacts = await storage.recent_contacts(alice.uuid, since_ts=T0)
    assert [(c.kind, c.peer, c.last.packet_id) for c in contacts] == [
        (MessageKind.P2T, topic.topic_id, "g1"),
        (MessageKind.P2P, bob.uuid, "b1"),
        (MessageKind.P2P, carol.uuid, "c1"),
    ]
    assert contacts[1].last.seq > 0
    assert [c.peer for c in await storage.recent_contacts(alice.uuid, since_ts=T0 + 15)] == [
        topic.topic_id,
        bob.uuid,
    ]
    await storage.hide_contact(alice.uuid, MessageKind.P2P, bob.uuid)
    assert bob.uuid not in [c.peer for c in await storage.recent_contacts(alice.uuid, since_ts=T0)]
    await one(storage, p2p(bob, "alice", "b2", ts=T0 + 40))
    back = await storage.recent_contacts(alice.uuid, since_ts=T0)
    assert (back[0].peer, back[0].last.packet_id) == (bob.uuid, "b2")


# ---------------------------------------------------------------------------- durability


async def test_a_second_handle_continues_the_sequences(storage: Storage, opener: Opener) -> None:
    alice, bob = await users(storage, "alice", "bob")
    first = await one(storage, p2p(alice, "bob", "p1"))
    topic = await storage.create_uc_topic(app_id=APP.app_id, name="u", owner=alice.uuid, now_ms=T0)
    uc_first = await one(
        storage, UCWrite(app_id=APP.app_id, sender_uuid=alice.uuid, topic_id=topic.topic_id, ts=T0)
    )
    await storage.open_cursor(bob.uuid, "phone")
    other = await opener()
    sender = await other.find_user(APP.app_id, "alice")
    assert sender is not None
    assert sender.uuid == alice.uuid
    second = await one(other, p2p(sender, "bob", "p2"))
    uc_second = await one(
        other, UCWrite(app_id=APP.app_id, sender_uuid=alice.uuid, topic_id=topic.topic_id, ts=T0)
    )
    assert isinstance(first, P2PWritten)
    assert isinstance(second, P2PWritten)
    assert second.recipient_seq > first.recipient_seq
    assert second.sender_seq > first.sender_seq
    assert isinstance(uc_first, UCWritten)
    assert isinstance(uc_second, UCWritten)
    assert uc_second.sequence > uc_first.sequence
    assert await other.cursor(bob.uuid, "phone") == 0
    assert [m.packet_id for m in await other.backlog(bob.uuid, 0, 10)] == ["p1", "p2"]


async def test_pruned_dedup_records_are_forgotten(storage: Storage) -> None:
    alice, _ = await users(storage, "alice", "bob")
    await one(storage, p2p(alice, "bob", "old", ts=T0))
    await one(storage, p2p(alice, "bob", "new", ts=T0 + 10_000))
    assert await storage.prune_dedup(T0 + 1) == 1
    resent_old = await one(storage, p2p(alice, "bob", "old", ts=T0 + 20_000))
    resent_new = await one(storage, p2p(alice, "bob", "new", ts=T0 + 20_000))
    assert isinstance(resent_old, P2PWritten)
    assert isinstance(resent_new, P2PWritten)
    assert not resent_old.duplicate
    assert resent_new.duplicate
