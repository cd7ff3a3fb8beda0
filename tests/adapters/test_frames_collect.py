"""collect / to_frame: stop on completion, count or timeout; receive times; errors."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest
import reactivex as rx
from reactivex import operators as ops
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from mimc_rx.frames import collect, scheduler_clock, to_frame
from mimc_rx.frames.clock import datetime_to_us, us_to_datetime
from mimc_rx.protocol.events import PacketId, ServerAck

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def ack(seq: int) -> ServerAck:
    return ServerAck(packet_id=PacketId(f"p{seq}"), sequence=seq, timestamp=1_780_000_000_000)


def test_clock_conversions_are_exact() -> None:
    moment = datetime(2026, 5, 28, 12, 30, 1, 123456, tzinfo=UTC)
    assert us_to_datetime(datetime_to_us(moment)) == moment
    assert datetime_to_us(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000  # naive means UTC


def test_collect_on_virtual_time_stamps_scheduler_times() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, ack(1)), on_next(250, ack(2)), on_completed(300)
    )
    collector = collect(source, scheduler=scheduler)
    scheduler.start()
    assert collector.completed
    assert collector.done
    frame = collector.frame()
    # TestScheduler ticks are seconds since the epoch.
    assert frame["received_at"].tolist() == [
        pd.Timestamp(210, unit="s", tz="UTC"),
        pd.Timestamp(250, unit="s", tz="UTC"),
    ]
    assert frame["sequence"].tolist() == [1, 2]


def test_count_stops_collecting_and_unsubscribes() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, ack(1)), on_next(220, ack(2)), on_next(230, ack(3)), on_completed(400)
    )
    collector = collect(source, count=2, scheduler=scheduler)
    scheduler.advance_to(100)  # subscription happens at creation time, tick 0
    scheduler.start()
    assert collector.frame()["sequence"].tolist() == [1, 2]
    assert not collector.completed
    assert source.subscriptions == [subscribe(0, 220)]


def test_collect_count_zero_and_an_error() -> None:
    scheduler = TestScheduler()
    failing = scheduler.create_hot_observable(on_next(210, ack(1)), on_error(220, "boom"))
    nothing = collect(rx.of(ack(1)), count=0)
    assert nothing.done
    assert len(nothing) == 0
    assert list(nothing.frame().columns) == ["received_at"]
    collector = collect(failing, scheduler=scheduler, event_type=ServerAck)
    scheduler.start()
    assert isinstance(collector.error, Exception)
    assert len(collector.frame()) == 1
    empty = collect(rx.empty(), event_type=ServerAck).frame()
    assert "sequence" in empty.columns
    assert len(empty) == 0


def test_a_collector_subscribes_once() -> None:
    collector = collect(rx.never())
    with pytest.raises(RuntimeError, match="already subscribed"):
        collector.subscribe_to(rx.never())


async def test_to_frame_until_completion() -> None:
    frame = await to_frame(rx.of(ack(1), ack(2), ack(3)), name="alice")
    assert frame["sequence"].tolist() == [1, 2, 3]
    assert frame["source"].tolist() == ["alice"] * 3
    assert frame["received_at"].notna().all()


async def test_to_frame_until_count_with_a_subject(wait_timeout: float) -> None:
    subject: Subject[ServerAck] = Subject()
    arrival = to_frame(subject, count=2, timeout=wait_timeout)  # subscribed on return
    for seq in (1, 2, 3):
        subject.on_next(ack(seq))
    assert not subject.observers  # unsubscribed as soon as the count was reached
    frame = await arrival
    assert frame["sequence"].tolist() == [1, 2]


async def test_to_frame_timeout_returns_what_arrived() -> None:
    subject: Subject[ServerAck] = Subject()
    arrival = to_frame(subject, timeout=0.05, event_type=ServerAck)
    subject.on_next(ack(1))
    frame = await arrival
    assert frame["sequence"].tolist() == [1]
    assert not subject.observers
    nothing = await to_frame(rx.never(), timeout=0.01, event_type=ServerAck)
    assert len(nothing) == 0
    assert "packet_id" in nothing.columns


async def test_to_frame_raises_the_stream_error() -> None:
    with pytest.raises(ZeroDivisionError):
        await to_frame(rx.throw(ZeroDivisionError("nope")))


async def test_to_frame_with_events_from_another_thread(wait_timeout: float) -> None:
    subject: Subject[ServerAck] = Subject()
    arrival = to_frame(subject, count=3, timeout=wait_timeout)

    def produce() -> None:
        for seq in range(1, 6):
            subject.on_next(ack(seq))

    thread = threading.Thread(target=produce)
    thread.start()
    frame = await arrival
    thread.join(wait_timeout)
    assert frame["sequence"].tolist() == [1, 2, 3]


async def test_cancelling_to_frame_unsubscribes() -> None:
    subject: Subject[ServerAck] = Subject()
    arrival = to_frame(subject)
    assert subject.observers
    arrival.cancel()
    await asyncio.sleep(0)
    assert not subject.observers


async def test_to_frame_with_count_zero_resolves_empty() -> None:
    frame = await to_frame(rx.never(), count=0, event_type=ServerAck)
    assert len(frame) == 0
    assert "sequence" in frame.columns


async def test_to_frame_of_dicts_from_an_operator_pipeline() -> None:
    def row(a: ServerAck) -> dict[str, object]:
        return {"packet": a.packet_id, "double": a.sequence * 2}

    source = rx.of(ack(1), ack(2)).pipe(ops.map(row))
    frame = await to_frame(source)
    assert list(frame.columns) == ["received_at", "packet", "double"]
    assert frame["double"].tolist() == [2, 4]
    assert str(frame["packet"].dtype) == "str"


async def test_to_frame_with_an_injected_clock() -> None:
    ticks = iter([100, 200])
    frame = await to_frame(rx.of(ack(1), ack(2)), clock=lambda: next(ticks))
    assert frame["received_at"].tolist() == [
        pd.Timestamp(100, unit="us", tz="UTC"),
        pd.Timestamp(200, unit="us", tz="UTC"),
    ]


def test_scheduler_clock_reads_virtual_time() -> None:
    scheduler = TestScheduler()
    scheduler.advance_to(12.5)
    assert scheduler_clock(scheduler)() == 12_500_000
