"""``mimc_rx.aiter``: an Observable as a bounded async iterator, with an overflow policy."""

from __future__ import annotations

import asyncio
import threading

import pytest
from reactivex.subject import Subject

import mimc_rx
from mimc_rx.client.aiter import BufferOverflow, OverflowPolicy

from .conftest import TIMEOUT


async def test_async_for_sees_values_sent_after_the_call_then_ends_on_completion() -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject)
    for i in range(3):  # emitted before the first __anext__: buffered, not lost
        subject.on_next(i)
    subject.on_completed()
    assert [v async for v in values] == [0, 1, 2]


async def test_the_consumer_waits_for_the_next_value() -> None:
    subject: Subject[str] = Subject()
    values = mimc_rx.aiter(subject)
    pending = asyncio.ensure_future(values.__anext__())
    await asyncio.sleep(0)
    assert not pending.done()
    subject.on_next("hi")
    assert await asyncio.wait_for(pending, TIMEOUT) == "hi"


@pytest.mark.parametrize(
    ("policy", "kept", "dropped"),
    [("drop_oldest", [3, 4], 3), ("drop_newest", [0, 1], 3)],
)
async def test_a_slow_consumer_loses_values_by_the_policy(
    policy: OverflowPolicy, kept: list[int], dropped: int
) -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject, maxsize=2, overflow=policy)
    for i in range(5):
        subject.on_next(i)
    subject.on_completed()
    assert [v async for v in values] == kept
    assert values.dropped == dropped


async def test_the_error_policy_ends_the_iteration_after_the_buffered_values() -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject, maxsize=2, overflow="error")
    for i in range(3):
        subject.on_next(i)
    assert [await values.__anext__(), await values.__anext__()] == [0, 1]
    with pytest.raises(BufferOverflow, match="2 values"):
        await values.__anext__()
    assert not subject.observers  # the overflow unsubscribed


async def test_a_stream_error_is_raised_by_the_loop() -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject)
    subject.on_next(1)
    subject.on_error(ValueError("boom"))
    assert await values.__anext__() == 1
    with pytest.raises(ValueError, match="boom"):
        await values.__anext__()


async def test_values_from_another_thread_reach_the_loop() -> None:
    subject: Subject[int] = Subject()
    async with mimc_rx.aiter(subject) as values:

        def emit() -> None:
            for i in range(3):
                subject.on_next(i)

        thread = threading.Thread(target=emit)
        thread.start()
        got = [await asyncio.wait_for(values.__anext__(), TIMEOUT) for _ in range(3)]
        thread.join()
    assert got == [0, 1, 2]
    assert not subject.observers  # async with unsubscribed


async def test_aclose_ends_a_waiting_consumer() -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject)
    pending = asyncio.ensure_future(values.__anext__())
    await asyncio.sleep(0)
    await values.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, TIMEOUT)
    assert "closed" in repr(values)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        mimc_rx.aiter(Subject(), maxsize=0)
    with pytest.raises(ValueError, match="overflow"):
        mimc_rx.aiter(Subject(), overflow="block")  # type: ignore[arg-type]


def test_made_without_a_loop_it_subscribes_on_first_use() -> None:
    subject: Subject[int] = Subject()
    values = mimc_rx.aiter(subject)
    assert not subject.observers

    async def first() -> int:
        pending = asyncio.ensure_future(values.__anext__())
        await asyncio.sleep(0)
        subject.on_next(7)
        return await pending

    assert asyncio.run(first()) == 7
