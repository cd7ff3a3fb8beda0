"""Collect an observable into a DataFrame: until it completes, a count, or a timeout.

:class:`FrameCollector` is a plain reactivex observer that keeps each event and the local time
it arrived (an ``array('q')`` of microseconds, see :mod:`mimc_rx.frames.clock`). It works on any
scheduler, virtual time included: subscribe it, run the scheduler, call its ``frame()``.
:func:`to_frame` is the notebook form: ``await to_frame(user.p2p_messages, count=10, timeout=5)``.

A timeout is not an error here: the frame holds what arrived in time, because "what did I get in
five seconds?" is the question a notebook asks. An error from the stream is raised, since a
stream ends with ``on_error`` only when something is really wrong.

A wait with neither ``count`` nor ``timeout`` ends only when the stream completes, which the
client's streams never do: ``to_frame`` warns about it for them, and says it in the progress
line for any stream. Any wait longer than a second shows a
progress line in the notebook (what has arrived so far, against the count and the timeout),
and interrupting the cell says how much had arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reactivex.abc import DisposableBase, ObserverBase

from mimc_rx._extras import require_extra
from mimc_rx.frames.clock import Clock, resolve_clock
from mimc_rx.frames.schema import events_to_frame, stream_event_type

if TYPE_CHECKING:
    import pandas as pd
    from reactivex import Observable
    from reactivex.abc import SchedulerBase

__all__ = ["FrameCollector", "Progress", "collect", "to_frame"]

PROGRESS_AFTER = 1.0
"""Seconds a ``to_frame`` wait runs before it shows a progress line."""

_T = TypeVar("_T")


class FrameCollector(ObserverBase[_T], Generic[_T]):
    """An observer that keeps events with their receive times, for a DataFrame later.

    Args:
        count: stop (and unsubscribe) after this many events; ``None`` for no limit.
        clock: the receive-time clock; defaults to ``scheduler``'s time, else the wall clock.
        scheduler: see ``clock``.
        event_type: the schema of an empty result (when no event arrives, the frame still has
            the right columns).
        source: a ``source`` column naming where the events came from.
        payload: keep the raw payload bytes as a column too.
        on_done: called once when the collector stops (completion, error or count).
    """

    def __init__(
        self,
        *,
        count: int | None = None,
        clock: Clock | None = None,
        scheduler: SchedulerBase | None = None,
        event_type: type | None = None,
        source: str | None = None,
        payload: bool = False,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        self.events: list[_T] = []
        """The events, oldest first."""
        self.received_at = array("q")
        """Receive time of each event, microseconds since the epoch."""
        self.error: BaseException | None = None
        """The stream's error, if it ended with one."""
        self.completed = False
        """True once the stream completed."""
        self._count = count
        self._clock = resolve_clock(clock, scheduler)
        self._event_type = event_type
        self._source = source
        self._payload = payload
        self._on_done = on_done
        self._subscription: DisposableBase | None = None
        self._lock = threading.Lock()
        self._done = count == 0  # no more events accepted
        self._finished = False  # on_done was called

    @property
    def done(self) -> bool:
        """True once the collector stopped: completed, failed, count reached or disposed."""
        return self._done

    def __len__(self) -> int:
        return len(self.events)

    # -- observer

    def on_next(self, value: _T) -> None:
        stamp = self._clock()
        with self._lock:
            if self._done:
                return
            self.events.append(value)
            self.received_at.append(stamp)
            reached = self._count is not None and len(self.events) >= self._count
        if reached:
            self._finish()

    def on_error(self, error: Exception) -> None:
        self.error = error
        self._finish()

    def on_completed(self) -> None:
        self.completed = True
        self._finish()

    # -- lifetime

    def subscribe_to(
        self, source: Observable[_T], *, scheduler: SchedulerBase | None = None
    ) -> FrameCollector[_T]:
        """Subscribe to ``source`` (once) and return self."""
        if self._subscription is not None:
            raise RuntimeError("this collector is already subscribed")
        subscription = source.subscribe(self, scheduler=scheduler)
        self._subscription = subscription
        if self._done:  # finished during subscribe (a synchronous source)
            subscription.dispose()
        return self

    def dispose(self) -> None:
        """Stop collecting and unsubscribe; the events kept so far stay."""
        with self._lock:
            self._done = True
        if self._subscription is not None:
            self._subscription.dispose()

    def _finish(self) -> None:
        with self._lock:
            first = not self._finished
            self._finished = True
            self._done = True
        if self._subscription is not None:
            self._subscription.dispose()
        if first and self._on_done is not None:
            self._on_done()

    # -- result

    def frame(self) -> pd.DataFrame:
        """The events so far as a DataFrame (see :mod:`mimc_rx.frames.schema`)."""
        with self._lock:
            events = list(self.events)
            stamps = array("q", self.received_at)
        return events_to_frame(
            events,
            stamps,
            event_type=self._event_type,
            source=self._source,
            payload=self._payload,
        )


def collect(
    source: Observable[_T],
    *,
    count: int | None = None,
    clock: Clock | None = None,
    scheduler: SchedulerBase | None = None,
    event_type: type | None = None,
    name: str | None = None,
    payload: bool = False,
) -> FrameCollector[_T]:
    """Subscribe a :class:`FrameCollector` to ``source`` and return it.

    The synchronous form, for virtual time: subscribe, run the scheduler, read ``.frame()``.
    ``name`` fills the ``source`` column.
    """
    collector: FrameCollector[_T] = FrameCollector(
        count=count,
        clock=clock,
        scheduler=scheduler,
        event_type=event_type or stream_event_type(source),
        source=name,
        payload=payload,
    )
    return collector.subscribe_to(source, scheduler=scheduler)


class Progress:
    """The progress line of a long ``to_frame`` wait: a display updated in place.

    Shown only inside IPython (a notebook or a console); elsewhere it does nothing. Tests
    pass their own ``show`` callable to see the lines.
    """

    def __init__(self, show: Callable[[str], None] | None = None) -> None:
        self._show = show
        self._handle: Any = None

    def update(self, line: str) -> None:
        """Show ``line``, replacing the previous one."""
        if self._show is not None:
            self._show(line)
            return
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            return
        if get_ipython() is None:
            return
        content = HTML(f"<code>{line}</code>")  # type: ignore[no-untyped-call]
        if self._handle is None:
            self._handle = display(content, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(content)


def _progress_line(
    collector: FrameCollector[Any], count: int | None, timeout: float | None, waited: float
) -> str:
    got = f"{len(collector):,}" + (f" / {count:,}" if count is not None else "")
    if timeout is not None:
        limit = f" / {timeout:g} s"
    elif count is None:
        limit = " (no count= or timeout=: until the stream completes)"
    else:
        limit = " (no timeout)"
    return f"to_frame: {got} events after {waited:.1f} s{limit}"


def to_frame(
    source: Observable[Any],
    *,
    count: int | None = None,
    timeout: float | None = None,
    clock: Clock | None = None,
    scheduler: SchedulerBase | None = None,
    event_type: type | None = None,
    name: str | None = None,
    payload: bool = False,
    progress: bool | Progress = True,
) -> asyncio.Future[pd.DataFrame]:
    """Collect ``source`` into a DataFrame until it completes, ``count`` events arrive, or
    ``timeout`` seconds pass, whichever comes first.

    The subscription is made before this returns, so there is no race in::

        arrival = to_frame(bob.p2p_messages, count=1, timeout=5)
        alice.send_message("bob", "hi")
        frame = await arrival

    (``await to_frame(...)`` in one go works too.) Call it on the running loop: Jupyter's, with
    top-level ``await``, or any asyncio program's. The stream may emit from another thread.
    On timeout the frame holds what arrived in time; cancelling the future unsubscribes.

    Args:
        source: any observable; the client's streams (``user.p2p_messages``...) give typed frames.
        count: stop after this many events.
        timeout: stop after this many seconds (of the running event loop's clock).
        clock: receive-time clock; defaults to ``scheduler``'s, else the wall clock.
        scheduler: passed to ``subscribe``.
        event_type: schema of an empty result, e.g. ``P2PMessage``.
        name: fills a ``source`` column.
        payload: keep the raw payload bytes too.
        progress: show a progress line when the wait lasts over a second (in IPython);
            False for none, or a ``Progress`` of your own.

    Returns:
        A future of the frame. It fails with the stream's error if the stream ends with one.

    Raises:
        MissingExtra: pandas, numpy or pyarrow is not installed (at once, not in the future).
    """
    require_extra("frames", "to_frame()")
    if count is None and timeout is None and stream_event_type(source) is not None:
        # One of the user's own streams: they complete only when the user is closed.
        warnings.warn(
            "to_frame() without count= or timeout= waits until the stream completes, which a "
            "user's stream never does; pass count=, timeout= or both",
            RuntimeWarning,
            stacklevel=2,
        )
    loop = asyncio.get_running_loop()
    result: asyncio.Future[pd.DataFrame] = loop.create_future()
    collector: FrameCollector[Any]
    started = time.monotonic()
    meter = progress if isinstance(progress, Progress) else Progress() if progress else None
    ticker: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal ticker
        if result.done() or meter is None:
            return
        waited = time.monotonic() - started
        meter.update(_progress_line(collector, count, timeout, waited))
        ticker = loop.call_later(0.5, tick)

    def finish() -> None:
        collector.dispose()
        if result.done():
            return
        if collector.error is not None:
            result.set_exception(collector.error)
            return
        try:
            frame = collector.frame()
        except Exception as exc:  # the future must end, whatever building the frame raised
            result.set_exception(exc)
            return
        result.set_result(frame)
        if meter is not None and time.monotonic() - started >= PROGRESS_AFTER:
            waited = time.monotonic() - started
            meter.update(_progress_line(collector, count, timeout, waited) + ", done")

    def on_done() -> None:
        loop.call_soon_threadsafe(finish)

    collector = FrameCollector(
        count=count,
        clock=clock,
        scheduler=scheduler,
        event_type=event_type or stream_event_type(source),
        source=name,
        payload=payload,
        on_done=on_done,
    )
    collector.subscribe_to(source, scheduler=scheduler)
    timer = loop.call_later(timeout, finish) if timeout is not None else None
    if meter is not None:
        ticker = loop.call_later(PROGRESS_AFTER, tick)

    def cleanup(_result: asyncio.Future[pd.DataFrame]) -> None:
        collector.dispose()
        if timer is not None:
            timer.cancel()
        if ticker is not None:
            ticker.cancel()
        if _result.cancelled() and meter is not None:
            waited = time.monotonic() - started
            meter.update(_progress_line(collector, count, timeout, waited) + ", interrupted")

    result.add_done_callback(cleanup)
    if collector.done:  # count=0, or a synchronous source that already ended
        loop.call_soon(finish)
    return result
