"""The delivery rules of one connection (mimc_rx.server.hub.feed.Feed), without a loop or I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.server.hub.feed import Acked, Feed
from mimc_rx.server.storage import MessageKind, StoredMessage


def stored(seq: int) -> StoredMessage:
    return StoredMessage(
        id=seq,
        seq=seq,
        sender_seq=seq,
        kind=MessageKind.P2P,
        from_uuid=1,
        from_account="alice",
        from_resource="r",
        to_uuid=2,
        to_account="bob",
        to_resource="",
        topic_id=0,
        packet_id=f"p{seq}",
        payload=b"x",
        biz_type="",
        ts=seq,
        app_id=1,
        package="pkg",
    )


def test_a_live_message_raises_sent_through_and_a_stored_one_is_not_sent_twice() -> None:
    feed = Feed(sent_through=10)
    assert feed.admit(12, stored=True)
    assert feed.sent_through == 12
    assert not feed.admit(11, stored=True)  # below: a backlog read sent it already
    assert feed.admit(11, stored=False)  # unstored: in no backlog, always pushed
    assert feed.sent_through == 12


def test_while_pending_stored_messages_wait_and_mark_the_read_missed() -> None:
    feed = Feed(sent_through=10, pending=True)
    assert feed.admit(20, stored=False)  # pushed, but sent_through stays below the backlog
    assert (feed.sent_through, feed.missed) == (10, False)
    assert not feed.admit(21, stored=True)
    assert feed.missed
    assert not feed.end_read()  # read again: 21 is in the store, above sent_through
    assert feed.pending
    feed.begin_read()
    assert (feed.pending, feed.missed) == (True, False)
    assert feed.end_read()
    assert not feed.pending


def test_take_hands_out_only_what_was_not_sent_and_counts_it_sent() -> None:
    feed = Feed(sent_through=5)
    assert [m.seq for m in feed.take([stored(4), stored(5), stored(7), stored(9)])] == [7, 9]
    assert feed.sent_through == 9
    assert feed.take([stored(9)]) == []


def test_an_ack_is_clamped_to_what_was_sent() -> None:
    feed = Feed(sent_through=10)
    assert feed.ack(50) == Acked(10, False)
    assert feed.ack(7) == Acked(7, False)
    assert feed.sent_through == 10


def test_the_ack_of_a_notified_max_sequence_drops_that_range() -> None:
    feed = Feed(sent_through=10)
    feed.notify(30)
    feed.notify(60)
    assert feed.pending
    assert feed.ack(30) == Acked(30, True)
    assert (feed.sent_through, feed.notified) == (30, {60})
    assert feed.ack(45) == Acked(30, False)  # not notified: clamped
    assert feed.ack(60) == Acked(60, True)
    assert feed.notified == set()


def test_a_look_starts_a_read_only_when_none_is_in_flight() -> None:
    feed = Feed(sent_through=0)
    assert feed.look()
    assert feed.pending
    assert not feed.look()  # the read in flight takes them, once more
    assert feed.missed


@given(
    st.integers(0, 100),
    st.lists(
        st.tuples(st.sampled_from(["live", "stored", "ack", "read", "look"]), st.integers(0, 200))
    ),
)
def test_no_cursor_ever_passes_what_was_sent(start: int, steps: list[tuple[str, int]]) -> None:
    """Whatever happens, a cursor written is at most the highest sequence handed out (or the
    start, or a notified range the client dropped)."""
    feed = Feed(sent_through=start)
    handed = start
    for action, seq in steps:
        if action == "live" and feed.admit(seq, stored=True):
            handed = max(handed, seq)
        elif action == "stored":
            for message in feed.take([stored(s) for s in range(seq, seq + 3)]):
                handed = max(handed, message.seq)
        elif action == "read":
            feed.begin_read()
            feed.end_read()
        elif action == "look":
            feed.look()
        elif action == "ack":
            assert feed.ack(seq).cursor <= handed
        assert feed.sent_through <= handed
