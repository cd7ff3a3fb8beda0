"""LiveFrame: bounds by rows and age, caching, display and throttled refresh."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pandas as pd
import pytest
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from mimc_rx.frames import LiveFrame
from mimc_rx.protocol.events import PacketId, ServerAck

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


def ack(seq: int) -> ServerAck:
    return ServerAck(packet_id=PacketId(f"p{seq}"), sequence=seq, timestamp=1_780_000_000_000)


def test_an_unbounded_live_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="max_rows, max_age or both"):
        LiveFrame(Subject(), max_rows=None)
    with pytest.raises(ValueError, match="max_rows must be"):
        LiveFrame(Subject(), max_rows=0)
    with pytest.raises(ValueError, match="max_age must be"):
        LiveFrame(Subject(), max_rows=None, max_age=0)


def test_row_bound_keeps_the_newest_rows() -> None:
    subject: Subject[ServerAck] = Subject()
    live = LiveFrame(subject, max_rows=3)
    for seq in range(1, 8):
        subject.on_next(ack(seq))
    assert live.frame["sequence"].tolist() == [5, 6, 7]
    assert len(live) == 3
    assert live.seen == 7
    assert live.dropped == 4


def test_age_bound_drops_old_rows_even_without_new_events() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(10, ack(1)), on_next(20, ack(2)), on_next(35, ack(3))
    )
    live = LiveFrame(source, max_rows=None, max_age=timedelta(seconds=15), scheduler=scheduler)
    scheduler.advance_to(21)
    assert live.frame["sequence"].tolist() == [1, 2]
    scheduler.advance_to(35)  # ack 1 (t=10) is 25 s old now; ack 2 (t=20) is 15 s old
    assert live.frame["sequence"].tolist() == [2, 3]
    scheduler.advance_to(49)
    assert live.frame["sequence"].tolist() == [3]
    scheduler.advance_to(60)
    assert len(live.frame) == 0
    assert live.dropped == 3
    assert "sequence" in live.frame.columns  # an emptied frame keeps its schema


def test_both_bounds_apply() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(*(on_next(10 + i, ack(i)) for i in range(10)))
    live = LiveFrame(source, max_rows=4, max_age=3.5, scheduler=scheduler)
    scheduler.advance_to(19)
    assert live.frame["sequence"].tolist() == [6, 7, 8, 9]
    scheduler.advance_to(22)  # now 22: rows received before 18.5 expire
    assert live.frame["sequence"].tolist() == [9]


def test_the_frame_is_cached_until_something_changes() -> None:
    subject: Subject[ServerAck] = Subject()
    live = LiveFrame(subject, max_rows=10, name="acks", event_type=ServerAck)
    empty = live.frame
    assert len(empty) == 0
    assert "sequence" in empty.columns
    subject.on_next(ack(1))
    first = live.frame
    assert first is live.frame
    subject.on_next(ack(2))
    assert live.frame is not first
    assert live.frame["source"].tolist() == ["acks", "acks"]


def test_states_and_dispose() -> None:
    subject: Subject[ServerAck] = Subject()
    live = LiveFrame(subject)
    assert live.state == "running"
    subject.on_next(ack(1))
    live.dispose()
    assert live.state == "disposed"
    assert not subject.observers
    assert live.frame["sequence"].tolist() == [1]
    scheduler = TestScheduler()
    ok = LiveFrame(scheduler.create_hot_observable(on_completed(5)), scheduler=scheduler)
    bad = LiveFrame(scheduler.create_hot_observable(on_error(5, "x")), scheduler=scheduler)
    scheduler.start()
    assert ok.state == "completed"
    assert bad.state.startswith("failed: ")
    assert bad.error is not None
    never: Subject[ServerAck] = Subject()
    with LiveFrame(never) as scoped:
        assert scoped.state == "running"
    assert scoped.state == "disposed"


def test_html_shows_a_header_and_the_newest_rows() -> None:
    subject: Subject[ServerAck] = Subject()
    live = LiveFrame(subject, max_rows=100, display_rows=2, name="alice <acks>")
    for seq in (111, 222, 333):
        subject.on_next(ack(seq))
    page = live._repr_html_()
    assert "LiveFrame alice &lt;acks&gt;: 3 rows, 3 seen, bounds 100 rows, running" in page
    assert "<table" in page
    assert "333" in page
    assert "222" in page
    assert "111" not in page
    assert repr(live).startswith("<LiveFrame alice <acks>: 3 rows")


def test_the_widget_refreshes_at_most_once_per_period_then_catches_up() -> None:
    pytest.importorskip("ipywidgets")
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(101, ack(1)), on_next(102, ack(2)), on_next(103, ack(3)), on_completed(200)
    )
    live = LiveFrame(source, refresh=10.0, scheduler=scheduler)
    scheduler.advance_to(100)
    widget = live.show()
    renders: list[float] = []
    widget.observe(lambda change: renders.append(scheduler.clock), names="value")
    scheduler.advance_to(105)
    # ack 1 at 101 arrived inside the throttle window opened by show() at 100: not drawn yet
    assert "p1" not in widget.value
    scheduler.advance_to(115)
    assert renders == [110.0]  # one trailing refresh, with everything so far
    assert "p3" in widget.value
    assert "3 rows" in widget.value
    scheduler.start()
    assert "completed" in widget.value  # the end of the stream is drawn at once


def test_an_age_bounded_widget_redraws_when_rows_expire() -> None:
    pytest.importorskip("ipywidgets")
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(10, ack(1)))
    live = LiveFrame(source, max_rows=None, max_age=5, refresh=0.1, scheduler=scheduler)
    widget = live.show()
    scheduler.advance_to(12)
    assert "1 rows" in widget.value
    scheduler.advance_to(16)
    assert "0 rows" in widget.value


async def test_the_widget_refreshes_on_the_running_loop(wait_timeout: float) -> None:
    pytest.importorskip("ipywidgets")
    subject: Subject[ServerAck] = Subject()
    live = LiveFrame(subject, refresh=0.01)
    widget = live.show()
    drawn = asyncio.Event()

    def on_value(change: dict[str, str]) -> None:
        if "p2" in change["new"]:
            drawn.set()

    widget.observe(on_value, names="value")
    subject.on_next(ack(1))
    subject.on_next(ack(2))  # inside the throttle window: drawn by the trailing refresh
    assert "p2" not in widget.value
    await asyncio.wait_for(drawn.wait(), wait_timeout)
    assert isinstance(live.frame, pd.DataFrame)


def test_without_ipywidgets_show_falls_back_to_a_display_handle(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.display import DisplayHandle

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(10, ack(1)), on_completed(20))
    live = LiveFrame(source, refresh=1.0, scheduler=scheduler)
    handle = live.show()
    assert isinstance(handle, DisplayHandle)
    assert "<IPython.core.display.HTML object>" in capsys.readouterr().out  # no kernel: printed
    updates: list[str] = []
    monkeypatch.setattr(handle, "update", lambda obj, **kw: updates.append(obj.data))
    scheduler.start()
    assert "p1" in updates[0]
    assert "completed" in updates[-1]
