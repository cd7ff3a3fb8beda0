"""The SQLite store on its own: identities, sequences, cursors, backlog, history, groups."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from mimc_rx.server.config import AppConfig, parse_app_spec
from mimc_rx.server.storage import MessageKind, Store, User, next_sequence

APP_ID = 77
NOW_MS = 1_800_000_000_000


def _p2p(store: Store, sender: User, recipient: User, text: str, ts: int = NOW_MS) -> int:
    """Store a P2P message the way the hub does; returns the recipient's sequence."""
    sender_seq = store.next_user_sequence(sender, ts)
    seq = store.next_user_sequence(recipient, ts)
    mid = store.add_message(
        kind=MessageKind.P2P,
        app_id=APP_ID,
        packet_id=f"pid-{text}",
        package="pkg",
        sender=sender,
        from_resource="r1",
        payload=text.encode(),
        biz_type="",
        ts=ts,
        sender_seq=sender_seq,
        to_user=recipient,
    )
    store.add_inbox([(recipient.uuid, seq, mid)])
    return seq


def test_user_identity_is_stable_across_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice = store.ensure_user(APP_ID, "alice")
    assert store.ensure_user(APP_ID, "alice") is alice
    assert store.ensure_user(APP_ID + 1, "alice").uuid != alice.uuid  # per (appId, account)
    assert len(base64.b64decode(alice.security_key, validate=True)) == 16
    store.close()
    again = Store(tmp_path / "s.db")
    found = again.find_user(APP_ID, "alice")
    assert found is not None
    assert (found.uuid, found.security_key) == (alice.uuid, alice.security_key)
    assert again.find_user(APP_ID, "nobody") is None
    again.close()


def test_sequences_increase_across_kinds_and_restarts(tmp_path: Path) -> None:
    assert next_sequence(0, NOW_MS) == NOW_MS * 1000
    assert next_sequence(NOW_MS * 1000 + 5, NOW_MS) == NOW_MS * 1000 + 6  # faster than the clock
    store = Store(tmp_path / "s.db")
    alice = store.ensure_user(APP_ID, "alice")
    seqs = [store.next_user_sequence(alice, NOW_MS) for _ in range(5)]
    assert seqs == sorted(set(seqs))
    store.close()
    store = Store(tmp_path / "s.db")
    alice = store.users[alice.uuid]
    # Even with a clock that went backwards, the next sequence is above every earlier one.
    assert store.next_user_sequence(alice, NOW_MS - 10_000) > seqs[-1]
    store.close()


def test_uncommitted_writes_are_lost_and_committed_ones_survive(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice, bob = store.ensure_user(APP_ID, "alice"), store.ensure_user(APP_ID, "bob")
    _p2p(store, alice, bob, "kept")
    store.commit()
    _p2p(store, alice, bob, "lost")
    # Simulate a crash: drop the connection without committing.
    store._db.close()
    again = Store(tmp_path / "s.db")
    texts = [m.payload for m in again.backlog(bob.uuid, 0, 10)]
    assert texts == [b"kept"]
    again.close()


def test_cursor_rules(tmp_path: Path) -> None:
    store = Store(":memory:")
    bob = store.ensure_user(APP_ID, "bob")
    alice = store.ensure_user(APP_ID, "alice")
    assert store.cursor(bob.uuid, "phone") is None
    assert store.open_cursor(bob.uuid, "phone") == 0  # first resource of the user
    s1 = _p2p(store, alice, bob, "one")
    s2 = _p2p(store, alice, bob, "two")
    assert store.advance_cursor(bob.uuid, "phone", s1) == s1
    assert store.advance_cursor(bob.uuid, "phone", s1 - 1) == s1  # never backwards
    # Acking a sequence that was never issued cannot hide future messages.
    assert store.advance_cursor(bob.uuid, "phone", s2 + 10**9) == s2
    # A new resource starts where the most advanced resource of the user is.
    assert store.open_cursor(bob.uuid, "laptop") == s2
    assert store.open_cursor(bob.uuid, "phone") == s2


def test_backlog_summary_and_order() -> None:
    store = Store(":memory:")
    alice, bob = store.ensure_user(APP_ID, "alice"), store.ensure_user(APP_ID, "bob")
    seqs = [_p2p(store, alice, bob, f"m{i}") for i in range(4)]
    assert store.backlog_summary(bob.uuid, 0) == (4, seqs[0], seqs[-1])
    assert store.backlog_summary(bob.uuid, seqs[1]) == (2, seqs[2], seqs[3])
    assert store.backlog_summary(alice.uuid, 0) == (0, 0, 0)
    page = store.backlog(bob.uuid, seqs[0], 2)
    assert [(m.seq, m.payload) for m in page] == [(seqs[1], b"m1"), (seqs[2], b"m2")]
    assert page[0].from_account == "alice"
    assert page[0].to_account == "bob"


def test_history_is_per_viewer() -> None:
    store = Store(":memory:")
    alice, bob, carol = (store.ensure_user(APP_ID, n) for n in ("alice", "bob", "carol"))
    for _ in range(3):  # bob's space is ahead of alice's
        store.next_user_sequence(bob, NOW_MS)
    ab = _p2p(store, alice, bob, "a->b", ts=NOW_MS)
    ba = _p2p(store, bob, alice, "b->a", ts=NOW_MS + 1)
    _p2p(store, carol, bob, "c->b", ts=NOW_MS + 2)
    seen_by_alice = store.history(alice.uuid, other=bob.uuid)
    assert [m.payload for m in seen_by_alice] == [b"a->b", b"b->a"]
    # Sequences are in the viewer's space: alice's own send and her receive.
    assert seen_by_alice[0].seq == seen_by_alice[0].sender_seq
    assert seen_by_alice[1].seq == ba
    seen_by_bob = store.history(bob.uuid, other=alice.uuid)
    assert seen_by_bob[0].seq == ab
    assert seen_by_bob[1].seq == seen_by_bob[1].sender_seq
    assert [m.seq for m in seen_by_bob] != [m.seq for m in seen_by_alice]
    assert store.history(alice.uuid, other=carol.uuid) == []
    # Ranges are half-open and "newest" keeps the last rows, still oldest first.
    assert [
        m.payload
        for m in store.history(bob.uuid, other=alice.uuid, from_ts=NOW_MS + 1, to_ts=NOW_MS + 2)
    ] == [b"b->a"]
    assert [m.payload for m in store.history(bob.uuid, other=alice.uuid, limit=1, newest=True)] == [
        b"b->a"
    ]
    first = seen_by_bob[0].seq
    assert [
        m.payload
        for m in store.history(bob.uuid, other=alice.uuid, start_seq=first, stop_seq=first + 1)
    ] == [b"a->b"]


def test_topics_persist(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice, bob, carol = (store.ensure_user(APP_ID, n) for n in ("alice", "bob", "carol"))
    topic = store.create_topic(
        app_id=APP_ID, name="t", owner=alice.uuid, members=[bob.uuid], now_ms=NOW_MS
    )
    assert list(topic.members) == [alice.uuid, bob.uuid]
    assert store.add_members(topic, [bob.uuid, carol.uuid], now_ms=NOW_MS + 1) == [carol.uuid]
    assert store.remove_members(topic, [bob.uuid, 12345]) == [bob.uuid]
    store.update_topic(topic, bulletin="hello", owner=carol.uuid)
    uc = store.create_uc_topic(app_id=APP_ID, name="room", owner=alice.uuid, now_ms=NOW_MS)
    assert store.uc_join(uc, bob.uuid)
    assert not store.uc_join(uc, bob.uuid)
    s1 = store.next_uc_sequence(uc, NOW_MS)
    store.close()
    again = Store(tmp_path / "s.db")
    t2 = again.topics[topic.topic_id]
    assert (t2.name, t2.bulletin, t2.owner_uuid) == ("t", "hello", carol.uuid)
    assert list(t2.members) == [alice.uuid, carol.uuid]
    assert [t.topic_id for t in again.topics_of(carol.uuid)] == [topic.topic_id]
    assert again.topics_of(bob.uuid) == []
    uc2 = again.uc_topics[uc.topic_id]
    assert set(uc2.members) == {alice.uuid, bob.uuid}
    assert again.next_uc_sequence(uc2, NOW_MS) > s1
    again.delete_topic(t2)
    again.delete_uc_topic(uc2)
    assert again.topics_of(carol.uuid) == []
    assert again.uc_topics_of(bob.uuid) == []
    again.close()


def test_tokens_and_pruning() -> None:
    store = Store(":memory:")
    alice = store.ensure_user(APP_ID, "alice")
    store.add_token("t1", alice.uuid, 100.0)
    found = store.lookup_token("t1")
    assert found is not None
    assert found[0] is alice
    assert found[1] == 100.0
    assert store.lookup_token("nope") is None
    assert store.prune_tokens(100.0 + 8 * 24 * 3600) == 1
    assert store.lookup_token("t1") is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("12:k:s", AppConfig(app_id=12, app_key="k", app_secret="s")),
        ("12:k:s:com.x", AppConfig(app_id=12, app_key="k", app_secret="s", package="com.x")),
    ],
)
def test_parse_app_spec(spec: str, expected: AppConfig) -> None:
    assert parse_app_spec(spec) == expected


@pytest.mark.parametrize("spec", ["12:k", "x:k:s", "12:k:s:p:extra", "0:k:s", "12::s"])
def test_parse_app_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError with a message is the contract
        parse_app_spec(spec)


def test_app_repr_hides_secret() -> None:
    assert "SECRET" not in repr(AppConfig(app_id=1, app_key="k", app_secret="SECRET"))


def test_rollback_forgets_what_the_failed_tick_created_in_memory(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice = store.ensure_user(APP_ID, "alice")
    group = store.create_topic(app_id=APP_ID, name="g", owner=alice.uuid, members=[], now_ms=NOW_MS)
    store.add_token("kept", alice.uuid, expires_at=NOW_MS)
    store.commit()

    # A tick that creates a user, a token, a group and a membership, then fails to commit.
    bob = store.ensure_user(APP_ID, "bob")
    store.add_token("lost", bob.uuid, expires_at=NOW_MS)
    store.add_members(group, [bob.uuid], now_ms=NOW_MS)
    lost_group = store.create_topic(
        app_id=APP_ID, name="lost", owner=bob.uuid, members=[], now_ms=NOW_MS
    )
    seq = _p2p(store, alice, bob, "never committed")
    store.rollback()

    assert store.find_user(APP_ID, "bob") is None
    assert store.lookup_token("lost") is None
    assert store.lookup_token("kept") is not None
    assert lost_group.topic_id not in store.topics
    assert list(store.topics[group.topic_id].members) == [alice.uuid]
    # Surviving objects keep their identity, and a counter never goes back.
    assert store.find_user(APP_ID, "alice") is alice
    assert store.topics[group.topic_id] is group
    assert store.next_user_sequence(alice, NOW_MS) > seq

    store.commit()
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert reopened.find_user(APP_ID, "bob") is None
    assert list(reopened.topics[group.topic_id].members) == [alice.uuid]


def _indexes(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))


def test_group_index_covers_group_messages_only_and_old_files_are_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    alice, bob = store.ensure_user(APP_ID, "alice"), store.ensure_user(APP_ID, "bob")
    topic = store.create_topic(
        app_id=APP_ID, name="t", owner=alice.uuid, members=[bob.uuid], now_ms=NOW_MS
    )
    mid = store.add_message(
        kind=MessageKind.P2T,
        app_id=APP_ID,
        packet_id="g1",
        package="pkg",
        sender=alice,
        from_resource="r1",
        payload=b"to the group",
        biz_type="",
        ts=NOW_MS,
        sender_seq=store.next_user_sequence(alice, NOW_MS),
        topic_id=topic.topic_id,
    )
    store.add_inbox([(bob.uuid, store.next_user_sequence(bob, NOW_MS), mid)])
    _p2p(store, alice, bob, "one to one")
    store.close()
    # A file made before the partial index: the full index on every message.
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX messages_group")
        db.execute("CREATE INDEX messages_p2t ON messages (topic_id, ts)")
    assert "messages_p2t" in _indexes(path)
    again = Store(path)
    indexes = _indexes(path)
    assert "messages_p2t" not in indexes
    assert "WHERE kind = 2" in indexes["messages_group"]
    with sqlite3.connect(path) as db:
        (entries,) = db.execute(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_group WHERE kind = 2"
        ).fetchone()
    assert entries == 1
    history = again.history(bob.uuid, topic_id=topic.topic_id, from_ts=NOW_MS - 1)
    assert [m.payload for m in history] == [b"to the group"]
    assert [m.payload for m in again.history(bob.uuid, other=alice.uuid)] == [b"one to one"]
    again.close()
