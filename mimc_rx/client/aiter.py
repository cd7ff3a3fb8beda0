"""``aiter(stream)``: any Observable as a bounded async iterator, for ``async for``.

reactivex pushes; ``async for`` pulls. In between sits a bounded buffer: values that arrive
while the loop body is busy wait there, oldest first. A consumer slower than the stream would
let that buffer grow without end, so it has a size and a policy for what to do when it is full:

* ``"drop_oldest"`` (default): keep the newest ``maxsize`` values (a live view wants the latest);
* ``"drop_newest"``: keep the first ``maxsize`` values, refuse the rest;
* ``"error"``: end the iteration with ``BufferOverflow`` (nothing may be lost silently).

``dropped`` counts what the policy discarded. The subscription is made when ``aiter()`` is called
on the running loop, so nothing sent after that line is missed::

    messages = mimc_rx.aiter(bob.p2p_messages, maxsize=100)
    alice.send_message("bob", "hi")
    async for message in messages:
        print(message.text)
        break                     # leaving the loop early: ``await messages.aclose()``

Values may be emitted on any thread (a ``SyncMIMCUser``'s loop thread, a reactivex scheduler);
they are handed to the iterator's loop thread-safely. ``async with`` unsubscribes at the end.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import TracebackType
from typing import Generic, Literal, Self, TypeVar

from reactivex import Observable, abc

from mimc_rx.errors import MimcError

__all__ = ["BufferOverflow", "ObservableIterator", "OverflowPolicy", "aiter"]

_T = TypeVar("_T")

OverflowPolicy = Literal["drop_oldest", "drop_newest", "error"]
"""What a full buffer does with one more value."""

_POLICIES = ("drop_oldest", "drop_newest", "error")


class BufferOverflow(MimcError, OverflowError):
    """The consumer of ``aiter(..., overflow="error")`` fell ``maxsize`` values behind."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        super().__init__(f"the async iterator's buffer of {maxsize} values overflowed")


class ObservableIterator(Generic[_T]):
    """The async iterator ``aiter()`` returns; see the module docstring.

    Attributes:
        dropped: how many values the overflow policy discarded so far.
    """

    def __init__(
        self,
        source: Observable[_T],
        *,
        maxsize: int,
        overflow: OverflowPolicy,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        if overflow not in _POLICIES:
            raise ValueError(f"overflow must be one of {_POLICIES}, not {overflow!r}")
        self.maxsize = maxsize
        self.overflow: OverflowPolicy = overflow
        self.dropped = 0
        self._source = source
        self._buffer: deque[_T] = deque()
        self._error: BaseException | None = None
        self._completed = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop = loop
        self._thread: threading.Thread | None = None
        self._subscription: abc.DisposableBase | None = None
        if loop is not None:
            self._subscribe(loop)

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.current_thread()
        self._subscription = self._source.subscribe(
            self._on_next, self._on_error, self._on_completed
        )

    # -- the observer side (any thread)

    def _hand_over(self, action: object, *args: object) -> None:
        loop = self._loop
        assert loop is not None
        if threading.current_thread() is self._thread:
            action(*args)  # type: ignore[operator]
        elif not loop.is_closed():
            loop.call_soon_threadsafe(action, *args)  # type: ignore[arg-type]

    def _on_next(self, value: _T) -> None:
        self._hand_over(self._push, value)

    def _on_error(self, error: Exception) -> None:
        self._hand_over(self._end, error)

    def _on_completed(self) -> None:
        self._hand_over(self._end, None)

    # -- on the loop

    def _push(self, value: _T) -> None:
        if self._closed or self._completed or self._error is not None:
            return
        buffer = self._buffer
        if len(buffer) >= self.maxsize:
            if self.overflow == "drop_oldest":
                buffer.popleft()
                self.dropped += 1
            elif self.overflow == "drop_newest":
                self.dropped += 1
                return
            else:
                self._end(BufferOverflow(self.maxsize))
                return
        buffer.append(value)
        self._wake()

    def _end(self, error: BaseException | None) -> None:
        if self._completed or self._error is not None:
            return
        if error is None:
            self._completed = True
        else:
            self._error = error
        self._dispose_subscription()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _dispose_subscription(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()

    # -- the iterator side

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _T:
        if self._loop is None:
            self._subscribe(asyncio.get_running_loop())
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._error is not None:
                # Values that arrived before the error were handed out first.
                raise self._error
            if self._completed or self._closed:
                raise StopAsyncIteration
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __len__(self) -> int:
        """Values waiting in the buffer."""
        return len(self._buffer)

    async def aclose(self) -> None:
        """Unsubscribe and end the iteration; values still buffered are discarded."""
        self.close()

    def close(self) -> None:
        """The synchronous ``aclose()``, for a notebook cell or a finally block."""
        self._closed = True
        self._buffer.clear()
        self._dispose_subscription()
        self._wake()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else "completed"
            if self._completed
            else f"failed: {self._error!r}"
            if self._error is not None
            else "open"
        )
        return (
            f"<ObservableIterator {state}, {len(self._buffer)}/{self.maxsize} buffered, "
            f"{self.dropped} dropped ({self.overflow})>"
        )


def aiter(
    source: Observable[_T],
    *,
    maxsize: int = 1000,
    overflow: OverflowPolicy = "drop_oldest",
) -> ObservableIterator[_T]:
    """``source`` as an async iterator with a bounded buffer (see the module docstring).

    Call it on the running loop to subscribe at once; called with no loop running, it
    subscribes on the first ``__anext__`` instead.

    Args:
        source: any Observable (``user.p2p_messages``, a piped stream...).
        maxsize: how many values may wait for a slow consumer.
        overflow: what a full buffer does: ``"drop_oldest"``, ``"drop_newest"`` or ``"error"``.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    return ObservableIterator(source, maxsize=maxsize, overflow=overflow, loop=loop)
