"""A live, bounded DataFrame of a running stream, that shows itself in a notebook.

``LiveFrame(user.p2p_messages, max_rows=1000, max_age=60)`` subscribes at once and keeps the
newest events: at most ``max_rows`` of them, none older than ``max_age`` seconds (by receive
time). ``live.frame`` is always current (rebuilt only when something changed); putting ``live``
last in a cell renders a snapshot (``_repr_html_``); ``live.show()`` returns a widget that
refreshes itself as events arrive.

Refreshes are throttled: at most one every ``refresh`` seconds, plus a trailing one so the last
event always shows. The trailing refresh is scheduled on the injected scheduler when there is one
(virtual time in tests), else on the running asyncio loop (Jupyter's), never on a thread of its
own. ipywidgets is imported only by :meth:`LiveFrame.show`; without it, ``show`` falls back to an
IPython display handle updated in place.

Before the first event the frame already has every column of its event type (taken from the
stream: the user's streams say what they carry), so an empty live frame shows its schema. The
view shows a few telling columns of the known types (``columns="all"`` for every one) in a box
that scrolls rather than widening the output area.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from reactivex.abc import DisposableBase, ObserverBase

from mimc_rx._extras import require_extra
from mimc_rx.frames.clock import Clock, resolve_clock, us_to_datetime
from mimc_rx.frames.schema import events_to_frame, stream_event_type
from mimc_rx.protocol.events import P2PMessage, P2TMessage, ServerAck, StatusChange, UCMessage

if TYPE_CHECKING:
    import pandas as pd
    from reactivex import Observable
    from reactivex.abc import SchedulerBase

__all__ = ["LiveFrame"]

_T = TypeVar("_T")

COMPACT_COLUMNS: Mapping[type, tuple[str, ...]] = {
    P2PMessage: ("received_at", "from_account", "to_account", "sequence", "text"),
    P2TMessage: ("received_at", "from_account", "topic_id", "sequence", "text"),
    UCMessage: ("received_at", "from_account", "topic_id", "sequence", "text"),
    ServerAck: ("received_at", "packet_id", "sequence", "ok", "err_msg"),
    StatusChange: ("received_at", "online", "err_type", "err_reason", "err_desc"),
}
"""The columns the view shows by default, per event type (``frame`` always has them all)."""


class LiveFrame(ObserverBase[_T], Generic[_T]):
    """A bounded, always-current DataFrame of a running stream.

    Args:
        source: the stream to follow; subscribed at once.
        max_rows: keep at most this many newest events (``None``: no row bound).
        max_age: drop events received more than this long ago (seconds or a timedelta;
            ``None``: no age bound). At least one bound is required: a live sink on an
            endless stream must not grow forever.
        clock: receive-time clock; defaults to ``scheduler``'s, else the wall clock.
        scheduler: passed to ``subscribe`` and used for refresh timers (virtual time in tests).
        name: shown in the header and filled in a ``source`` column.
        event_type: schema of the frame while empty.
        payload: keep the raw payload bytes as a column too.
        display_rows: how many of the newest rows the HTML view shows.
        refresh: minimum seconds between two widget refreshes.
        columns: the columns the view shows: by default a few telling ones of the event type
            (``COMPACT_COLUMNS``), ``"all"`` for every one, or a list of names.
        height: CSS max-height of the view; taller content scrolls.
    """

    def __init__(
        self,
        source: Observable[_T],
        *,
        max_rows: int | None = 1000,
        max_age: float | timedelta | None = None,
        clock: Clock | None = None,
        scheduler: SchedulerBase | None = None,
        name: str | None = None,
        event_type: type | None = None,
        payload: bool = False,
        display_rows: int = 10,
        refresh: float = 0.5,
        columns: Sequence[str] | Literal["all"] | None = None,
        height: str = "22em",
    ) -> None:
        require_extra("frames", "LiveFrame")
        if max_rows is None and max_age is None:
            raise ValueError("a LiveFrame needs max_rows, max_age or both")
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        if isinstance(max_age, timedelta):
            max_age = max_age.total_seconds()
        if max_age is not None and max_age <= 0:
            raise ValueError("max_age must be > 0")
        self.max_rows = max_rows
        self.max_age: float | None = max_age
        self.name = name
        self.display_rows = display_rows
        self.refresh = refresh
        self.seen = 0
        """How many events arrived in total (kept or since dropped)."""
        self.error: BaseException | None = None
        self._clock = resolve_clock(clock, scheduler)
        self._scheduler = scheduler
        self._event_type = event_type or stream_event_type(source)
        self.columns = columns
        self.height = height
        self._last_type: type | None = None
        self._payload = payload
        self._events: deque[_T] = deque(maxlen=max_rows)
        self._stamps: deque[int] = deque(maxlen=max_rows)
        self._lock = threading.RLock()
        self._state = "running"
        self._cache: pd.DataFrame | None = None
        self._view: Any = None  # an ipywidgets.HTML or an IPython DisplayHandle
        self._last_render: int | None = None
        self._render_pending = False
        self._subscription: DisposableBase | None = None
        self._subscription = source.subscribe(self, scheduler=scheduler)

    # -- observer

    def on_next(self, value: _T) -> None:
        stamp = self._clock()
        with self._lock:
            if self._state != "running":
                return
            self._events.append(value)
            self._stamps.append(stamp)
            if self._event_type is None:
                # Remembered so the frame keeps its columns once every row has expired.
                self._last_type = type(value)
            self.seen += 1
            self._evict(stamp)
            self._cache = None
        self._changed()

    def on_error(self, error: Exception) -> None:
        with self._lock:
            self.error = error
            self._state = f"failed: {type(error).__name__}: {error}"
        self._changed(force=True)

    def on_completed(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "completed"
        self._changed(force=True)

    # -- state

    @property
    def state(self) -> str:
        """``running``, ``completed``, ``disposed`` or ``failed: <error>``."""
        return self._state

    @property
    def dropped(self) -> int:
        """How many events were dropped by the bounds so far."""
        with self._lock:
            self._evict(self._clock())
            return self.seen - len(self._events)

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._events)

    @property
    def frame(self) -> pd.DataFrame:
        """The kept events as a DataFrame, oldest first; rebuilt only after a change."""
        with self._lock:
            if self._evict(self._clock()):
                self._cache = None
            if self._cache is None:
                self._cache = events_to_frame(
                    list(self._events),
                    list(self._stamps),
                    event_type=self._event_type or self._last_type,
                    source=self.name,
                    payload=self._payload,
                )
            return self._cache

    def _evict(self, now: int) -> bool:
        """Drop events older than ``max_age``; True when something was dropped."""
        if self.max_age is None:
            return False
        horizon = now - round(self.max_age * 1_000_000)
        dropped = False
        while self._stamps and self._stamps[0] < horizon:
            self._stamps.popleft()
            self._events.popleft()
            dropped = True
        return dropped

    def dispose(self) -> None:
        """Unsubscribe; the frame keeps its rows and the view shows ``disposed``."""
        with self._lock:
            if self._state == "running":
                self._state = "disposed"
        if self._subscription is not None:
            self._subscription.dispose()
        self._changed(force=True)

    def __enter__(self) -> LiveFrame[_T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    # -- display

    def _header(self) -> str:
        bounds = []
        if self.max_rows is not None:
            bounds.append(f"{self.max_rows:,} rows")
        if self.max_age is not None:
            bounds.append(f"{self.max_age:g} s")
        with self._lock:
            kept = len(self._events)
            last = self._stamps[-1] if self._stamps else None
        parts = [
            f"{kept:,} rows",
            f"{self.seen:,} seen",
            f"bounds {' / '.join(bounds)}",
            self._state,
        ]
        if last is not None:
            parts.append(f"last event {us_to_datetime(last):%H:%M:%S.%f} UTC")
        title = "LiveFrame" + (f" {self.name}" if self.name else "")
        return f"{title}: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<{self._header()}>"

    def _shown_columns(self, frame: pd.DataFrame) -> list[str]:
        columns = self.columns
        if columns == "all":
            return list(frame.columns)
        if columns is None:
            kind = self._event_type or self._last_type
            compact = COMPACT_COLUMNS.get(kind) if kind is not None else None
            if compact is None:
                return list(frame.columns)
            columns = ("received_at", "source", *compact[1:]) if self.name else compact
        return [c for c in columns if c in frame.columns]

    def _repr_html_(self) -> str:
        frame = self.frame
        tail = frame.tail(self.display_rows)[self._shown_columns(frame)]
        table = tail.to_html(max_rows=self.display_rows, notebook=True)
        hidden = len(frame.columns) - len(tail.columns)
        note = f" ({hidden} more columns in .frame)" if hidden else ""
        return (
            f'<div class="mimc-live-frame"><p><b>{html.escape(self._header())}</b>'
            f"{html.escape(note)}</p>"
            f'<div style="max-height:{html.escape(self.height)};max-width:100%;overflow:auto;">'
            f"{table}</div></div>"
        )

    def show(self) -> Any:
        """A view of this frame that refreshes as events arrive.

        Returns an ``ipywidgets.HTML`` (display it, e.g. as a cell's last expression). Without
        ipywidgets, displays an IPython output updated in place and returns its handle.
        """
        try:
            import ipywidgets
        except ImportError:
            from IPython.display import HTML, DisplayHandle

            handle = DisplayHandle()  # type: ignore[no-untyped-call]
            handle.display(HTML(self._repr_html_()))  # type: ignore[no-untyped-call]
            self._view = handle
        else:
            self._view = ipywidgets.HTML(value=self._repr_html_())
        self._last_render = self._clock()
        return self._view

    def _changed(self, *, force: bool = False) -> None:
        """Something changed: refresh the view now, or once the throttle allows."""
        if self._view is None:
            return
        now = self._clock()
        wait = 0.0
        if self._last_render is not None and not force:
            wait = self.refresh - (now - self._last_render) / 1_000_000
        if wait <= 0:
            self._render()
        elif not self._render_pending:
            self._render_pending = True
            if not self._call_later(wait, self._trailing_render):
                self._render_pending = False
                self._render()

    def _trailing_render(self) -> None:
        self._render_pending = False
        self._render()

    def _render(self) -> None:
        view = self._view
        if view is None:
            return
        self._last_render = self._clock()
        content = self._repr_html_()
        if hasattr(view, "value"):
            view.value = content
        else:
            from IPython.display import HTML

            view.update(HTML(content))  # type: ignore[no-untyped-call]
        self._expire_later()

    def _expire_later(self) -> None:
        """With an age bound, refresh again when the oldest row expires, even if idle."""
        with self._lock:
            if self.max_age is None or not self._stamps or self._state != "running":
                return
            if self._render_pending:
                return
            expiry = self._stamps[0] + round(self.max_age * 1_000_000)
        delay = max((expiry - self._clock()) / 1_000_000, 0.0) + 0.001
        self._render_pending = True
        if not self._call_later(delay, self._trailing_render):
            self._render_pending = False

    def _call_later(self, delay: float, action: Any) -> bool:
        """Run ``action`` after ``delay`` seconds on the scheduler or the running loop."""
        if self._scheduler is not None:
            self._scheduler.schedule_relative(delay, lambda _scheduler, _state: action())
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_later(delay, action)
        return True
