"""The in-memory negative filter in front of ``Store.find_sent`` (issue 11).

A packet id never recorded must cost no SQL; every answer must equal what the SQL lookup
alone gives, through commits, rollbacks, prunes, reopenings and an overflowing filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage import Store
from mimc_rx.server.storage.records import Topic

NOW_MS = 1_800_000_000_000
APP = AppConfig(app_id=77, app_key="k", app_secret="s", package="pkg")


@contextmanager
def _dedup_selects(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def trace(sql: str) -> None:
        if "packet_dedup" in sql and sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql)

    store._db.set_trace_callback(trace)
    try:
        yield seen
    finally:
        store._db.set_trace_callback(None)


def _sql_only(store: Store, uuid: int, packet_id: str, resource: str | None) -> object:
    """``find_sent`` as it answers without the filter (the reference)."""
    keys, store._sent_keys = store._sent_keys, None
    try:
        return store.find_sent(uuid, packet_id, resource)
    finally:
        store._sent_keys = keys


def _send(store: Store, packet_id: str, ts: int, resource: str = "r") -> int:
    alice, bob = store.ensure_user(77, "alice"), store.ensure_user(77, "bob")
    sender_seq, _ = store.record_p2p(
        app=APP,
        packet_id=packet_id,
        sender=alice,
        from_resource=resource,
        recipient=bob,
        payload=b"x",
        biz_type="",
        ts=ts,
    )
    return sender_seq


def test_a_new_packet_id_costs_no_sql_and_a_resend_is_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice = store.ensure_user(77, "alice")
    first = _send(store, "p1", NOW_MS)
    store.commit()
    with _dedup_selects(store) as selects:
        assert store.find_sent(alice.uuid, "p2", "r") is None
        assert store.find_sent(alice.uuid, "p2") is None
        assert selects == []
        assert store.find_sent(alice.uuid, "p1", "r") == (first, NOW_MS)
        assert len(selects) == 1
    store.close()


def test_the_filter_is_complete_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice = store.ensure_user(77, "alice")
    first = _send(store, "p1", NOW_MS)
    store.close()
    store = Store(tmp_path / "s.db")
    with _dedup_selects(store) as selects:
        assert store.find_sent(alice.uuid, "p1", "r") == (first, NOW_MS)
        assert store.find_sent(alice.uuid, "p1") == (first, NOW_MS)
        assert store.find_sent(alice.uuid, "never") is None
        assert len(selects) == 2  # the two hits only
    store.close()


def test_group_packets_enter_the_filter(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    alice, bob = store.ensure_user(77, "alice"), store.ensure_user(77, "bob")
    topic = Topic(
        topic_id=5,
        app_id=77,
        name="g",
        owner_uuid=alice.uuid,
        members={alice.uuid: None, bob.uuid: None},
    )
    sender_seq, _ = store.record_p2t(
        app=APP,
        packet_id="g1",
        sender=alice,
        from_resource="r",
        topic=topic,
        payload=b"x",
        biz_type="",
        ts=NOW_MS,
    )
    store.commit()
    assert store.find_sent(alice.uuid, "g1", "r") == (sender_seq, NOW_MS)
    store.close()


def test_an_overflowing_filter_falls_back_to_sql_then_reloads(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.SENT_FILTER_LIMIT = 3
    alice = store.ensure_user(77, "alice")
    seqs = {f"p{i}": _send(store, f"p{i}", NOW_MS + i) for i in range(5)}
    store.commit()
    assert store._sent_keys is None  # dropped at the fourth key
    for packet_id, seq in seqs.items():
        assert store.find_sent(alice.uuid, packet_id, "r") == (seq, NOW_MS + int(packet_id[1:]))
    with _dedup_selects(store) as selects:
        assert store.find_sent(alice.uuid, "new") is None
        assert len(selects) == 1  # no filter: SQL answers
    assert store.prune_sent(NOW_MS + 3) == 3
    assert store._sent_keys is not None  # two rows left: the filter is back, complete
    with _dedup_selects(store) as selects:
        assert store.find_sent(alice.uuid, "p0") is None
        assert store.find_sent(alice.uuid, "new") is None
        assert selects == []
    assert store.find_sent(alice.uuid, "p4", "r") == (seqs["p4"], NOW_MS + 4)
    store.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("send"),
            st.sampled_from(["a", "b", "c", "d", "e"]),
            st.sampled_from(["r", "s"]),
            st.integers(0, 5),
        ),
        st.tuples(st.just("commit")),
        st.tuples(st.just("rollback")),
        st.tuples(st.just("prune"), st.integers(0, 6)),
        st.tuples(st.just("reopen")),
    ),
    max_size=30,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS, limit=st.sampled_from([2, 4, 1000]))
def test_the_filter_never_changes_an_answer(
    tmp_path: Path, ops: list[tuple[object, ...]], limit: int
) -> None:
    path = tmp_path / f"prop-{limit}-{abs(hash(tuple(ops)))}.db"
    path.unlink(missing_ok=True)
    store = Store(path)
    store.SENT_FILTER_LIMIT = limit
    uuid = store.ensure_user(77, "alice").uuid
    store.ensure_user(77, "bob")
    store.commit()
    try:
        for op in ops:
            if op[0] == "send":
                _, packet_id, resource, dt = op
                assert isinstance(packet_id, str)
                assert isinstance(resource, str)
                assert isinstance(dt, int)
                if store.find_sent(uuid, packet_id, resource) is None:  # as the hub does
                    _send(store, packet_id, NOW_MS + dt, resource)
            elif op[0] == "commit":
                store.commit()
            elif op[0] == "rollback":
                store.rollback()
            elif op[0] == "prune":
                dt = op[1]
                assert isinstance(dt, int)
                store.prune_sent(NOW_MS + dt)
            else:
                store.close()
                store = Store(path)
                store.SENT_FILTER_LIMIT = limit
            for packet_id in "abcdef":
                for resource in ("r", "s", None):
                    expected = _sql_only(store, uuid, packet_id, resource)
                    assert store.find_sent(uuid, packet_id, resource) == expected
    finally:
        store.close()
