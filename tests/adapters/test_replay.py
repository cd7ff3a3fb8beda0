"""Record and replay: files round-trip exactly, replays equal the recording."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import reactivex as rx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from reactivex.scheduler import HistoricalScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from mimc_rx.client.values import Disconnected, DisconnectReason, Reconnecting
from mimc_rx.frames import collect, events_to_frame
from mimc_rx.frames.clock import us_to_datetime
from mimc_rx.frames.replay import Record, Recorder, Recording, register_event_type
from mimc_rx.frames.timing import Sent
from mimc_rx.protocol.events import (
    BadPacket,
    P2PMessage,
    P2TMessage,
    PacketId,
    ServerAck,
    StatusChange,
    UCJoinResult,
    UCMessage,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed

T0 = 1_780_000_000_000_000  # µs


@register_event_type
@dataclasses.dataclass(frozen=True)
class Odd:
    """A registered outside type whose field mixes types, forcing a JSON column in Parquet."""

    packet_id: Any
    topic_ids: tuple[int, ...] = ()


def p2p(seq: int, text: bytes) -> P2PMessage:
    return P2PMessage(
        packet_id=PacketId(f"web{seq}"),
        sequence=seq,
        timestamp=T0 // 1000 + seq,
        from_account="alice",
        from_resource="r",
        to_account="bob",
        to_resource="",
        payload=text,
        biz_type="chat",
    )


def sample_records() -> list[Record]:
    """One of everything awkward: emoji and invalid UTF-8, None, enums, uint64, floats."""
    events: list[tuple[str, Any]] = [
        ("alice/status", StatusChange(online=True)),
        ("alice/server_acks", ServerAck(packet_id=PacketId("web1"), sequence=5, timestamp=T0)),
        ("bob/p2p_messages", p2p(1, "smile 😀".encode())),
        ("bob/p2p_messages", p2p(2, b"\xff\x00raw")),
        (
            "bob/group_messages",
            P2TMessage(
                packet_id=PacketId("g"),
                sequence=3,
                timestamp=T0 // 1000,
                from_account="carol",
                from_resource="r",
                topic_id=42,
                payload=b"",
                is_store=False,
            ),
        ),
        (
            "bob/uc_messages",
            UCMessage(
                packet_id=PacketId("u"),
                sequence=1,
                timestamp=T0 // 1000,
                from_account="carol",
                from_resource="r",
                topic_id=2**64 - 1,
                payload=b"uc",
            ),
        ),
        ("bob/uc_join_results", UCJoinResult(topic_id=7, code=0, message="success")),
        ("bob/events", BadPacket(reason="bad", packet_id=None)),
        (
            "bob/disconnects",
            Disconnected(reason=DisconnectReason.CONNECTION_LOST, code=None, will_reconnect=True),
        ),
        ("bob/reconnects", Reconnecting(attempt=1, delay=0.37)),
        ("odd", Odd(packet_id=12, topic_ids=(1, 2))),
        (
            "sent",
            Sent(
                packet_id=PacketId("web1"),
                kind="p2p",
                sender="alice",
                target="bob",
                size=5,
                sent_at=T0,
            ),
        ),
        ("odd", Odd(packet_id="x")),
    ]
    return [Record(name, T0 + 1000 * i + i, event) for i, (name, event) in enumerate(events)]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_recording_survives_a_file_round_trip(tmp_path: Path, suffix: str) -> None:
    original = Recording(sample_records(), streams=["alice/disconnects"])
    path = original.save(tmp_path / f"session{suffix}")
    loaded = Recording.load(path)
    assert loaded == original
    assert loaded.records == original.records  # field by field, types included
    assert "alice/disconnects" in loaded.streams  # a stream that recorded nothing
    reason = loaded.events("bob/disconnects")[0].reason
    assert reason is DisconnectReason.CONNECTION_LOST
    assert loaded.events("odd")[0].topic_ids == (1, 2)


def test_parquet_files_read_well_without_mimc_rx(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    Recording(sample_records()).save(tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    assert str(table.schema.field("_received_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("payload").type) == "binary"
    metadata = table.schema.metadata
    assert json.loads(metadata[b"mimc_rx.json_columns"]) == ["packet_id"]


def test_loading_refuses_foreign_types_and_other_files(tmp_path: Path) -> None:
    path = tmp_path / "evil.jsonl"
    header = {"format": "mimc-rx-recording", "version": 1}
    line = {"stream": "s", "received_at": 1, "type": "os:system", "fields": {}}
    path.write_text(json.dumps(header) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="unknown event type 'os:system'"):
        Recording.load(path)
    (tmp_path / "other.jsonl").write_text('{"format": "something"}\n')
    with pytest.raises(ValueError, match="not a mimc-rx-recording file"):
        Recording.load(tmp_path / "other.jsonl")
    with pytest.raises(ValueError, match="cannot tell the format"):
        Recording([]).save(tmp_path / "x.csv")
    with pytest.raises(TypeError, match="only dataclass events"):
        Recording([Record("s", 1, 42)]).save(tmp_path / "x.jsonl")


def test_the_recorder_stamps_each_stream_in_arrival_order() -> None:
    scheduler = TestScheduler()
    acks = scheduler.create_hot_observable(
        on_next(10, ServerAck(packet_id=PacketId("a"), sequence=1, timestamp=0)),
        on_next(30, ServerAck(packet_id=PacketId("b"), sequence=2, timestamp=0)),
    )
    messages = scheduler.create_hot_observable(on_next(20, p2p(1, b"hi")), on_completed(40))
    user = SimpleNamespace(app_account="bob", server_acks=acks, p2p_messages=messages)
    with Recorder(scheduler=scheduler).add_user(user) as recorder:
        scheduler.advance_to(50)
    recording = recorder.recording()
    assert [(r.stream, r.received_at) for r in recording] == [
        ("bob/server_acks", 10_000_000),
        ("bob/p2p_messages", 20_000_000),
        ("bob/server_acks", 30_000_000),
    ]
    assert set(recording.streams) == {"bob/server_acks", "bob/p2p_messages"}
    assert acks.subscriptions == [ReactiveTest.subscribe(0, 50)]  # disposed on leaving `with`
    with pytest.raises(ValueError, match="already recorded"):
        Recorder().add("x", rx.never()).add("x", rx.never())


def test_recording_frames_carry_the_recorded_receive_times() -> None:
    recording = Recording(sample_records())
    frame = recording.frame("bob/p2p_messages", source="bob")
    stamps = [r.received_at for r in recording if r.stream == "bob/p2p_messages"]
    expected = events_to_frame(recording.events("bob/p2p_messages"), stamps, source="bob")
    assert_frame_equal(frame, expected)
    assert frame["text"].tolist() == ["smile 😀", "\ufffd\x00raw"]
    timeline = recording.frame("bob/disconnects", "bob/reconnects", "alice/status")
    assert timeline["event"].tolist() == ["StatusChange", "Disconnected", "Reconnecting"]
    assert timeline["received_at"].is_monotonic_increasing
    with pytest.raises(TypeError, match="name at least one stream"):
        recording.frame()


def test_a_virtual_time_replay_equals_the_recording() -> None:
    recording = Recording(sample_records())
    scheduler = HistoricalScheduler(recording.start)
    replay = recording.replay(scheduler)
    collectors = {
        name: collect(replay.stream(name), scheduler=scheduler) for name in replay.streams
    }
    replay.start()
    scheduler.start()
    assert replay.finished
    for name, collector in collectors.items():
        assert collector.completed
        assert_frame_equal(collector.frame(), recording.frame(name))
        assert collector.events == recording.events(name)
    assert scheduler.now == recording.end


def test_a_rebased_replay_keeps_the_recorded_spacing_divided_by_speed() -> None:
    records = [Record("s", T0 + offset, StatusChange(online=True)) for offset in (0, 4_000, 10_000)]
    scheduler = TestScheduler()
    scheduler.advance_to(100)
    replay = Recording(records).replay(scheduler, speed=2.0, rebase=True)
    collector = collect(replay.stream("s"), scheduler=scheduler)
    replay.start()
    scheduler.start()
    assert list(collector.received_at) == [100_000_000, 100_002_000, 100_005_000]


def test_a_replay_on_the_running_loop_emits_everything_in_order() -> None:
    async def main() -> list[tuple[str, Any]]:
        recording = Recording(sample_records())
        replay = recording.replay(speed=float("inf"))
        seen: list[tuple[str, Any]] = []
        for name in replay.streams:

            def on_next(event: Any, name: str = name) -> None:
                seen.append((name, event))

            replay[name].subscribe(on_next)
        await replay.run()
        assert replay.finished
        return seen

    import asyncio

    seen = asyncio.run(main())
    assert seen == [(r.stream, r.event) for r in sample_records()]


async def test_a_paced_replay_on_the_running_loop_completes(wait_timeout: float) -> None:
    import asyncio

    records = [Record("s", T0 + 1000 * i, StatusChange(online=i % 2 == 0)) for i in range(5)]
    replay = Recording(records).replay(speed=10.0)  # 4 ms of recording, 0.4 ms of replay
    collector = collect(replay.stream("s"))
    await asyncio.wait_for(replay.run(), wait_timeout)
    assert collector.completed
    assert collector.events == [r.event for r in records]


def test_a_replayed_user_looks_like_the_live_one() -> None:
    recording = Recording(sample_records())
    scheduler = HistoricalScheduler(recording.start)
    replay = recording.replay(scheduler)
    bob = replay.user("bob")
    assert bob.app_account == "bob"
    got = collect(bob.p2p_messages, scheduler=scheduler)
    quiet = collect(bob.pull_notifications, scheduler=scheduler)  # never recorded
    extra = collect(bob.events, scheduler=scheduler)  # recorded, not a standard stream name
    replay.start()
    scheduler.start()
    assert [m.sequence for m in got.events] == [1, 2]
    assert quiet.completed
    assert len(quiet) == 0
    assert len(extra) == 1
    with pytest.raises(KeyError, match="no streams recorded for 'nobody'"):
        replay.user("nobody")
    with pytest.raises(KeyError, match="no stream 'x'"):
        replay.stream("x")
    with pytest.raises(RuntimeError, match="already started"):
        replay.start()


def test_disposing_a_replay_stops_it() -> None:
    records = [Record("s", T0 + 1_000_000 * i, StatusChange(online=True)) for i in range(3)]
    scheduler = HistoricalScheduler(us_to_datetime(T0))
    replay = Recording(records).replay(scheduler)
    collector = collect(replay.stream("s"), scheduler=scheduler)
    subscription = replay.start()
    scheduler.advance_to(us_to_datetime(T0 + 1_500_000))
    subscription.dispose()
    scheduler.start()
    assert len(collector) == 2
    assert not collector.completed
    assert not replay.finished


def test_subject_streams_record_live_values() -> None:
    subject: Subject[StatusChange] = Subject()
    ticks = iter(range(1, 10))
    recorder = Recorder(clock=lambda: next(ticks)).add("alice/status", subject)
    subject.on_next(StatusChange(online=True))
    recorder.dispose()
    subject.on_next(StatusChange(online=False))  # after dispose: not recorded
    assert recorder.recording().records == [Record("alice/status", 1, StatusChange(online=True))]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(), min_size=1, max_size=5),
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=5),
    sequences=st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=5),
    suffix=st.sampled_from([".parquet", ".jsonl"]),
)
def test_any_message_survives_a_file_round_trip(
    tmp_path: Path, texts: list[str], payloads: list[bytes], sequences: list[int], suffix: str
) -> None:
    records = [
        Record(
            "bob/p2p_messages",
            T0 + i,
            dataclasses.replace(
                p2p(1, payload), from_account=text, sequence=sequence, biz_type=text[:3]
            ),
        )
        for i, (text, payload, sequence) in enumerate(zip(texts, payloads, sequences, strict=False))
    ]
    original = Recording(records)
    path = original.save(tmp_path / f"fuzz{suffix}")
    assert Recording.load(path) == original
