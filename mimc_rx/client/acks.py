"""Server acks by packet id, for ``MIMCUser.ack`` and ``MIMCUser.ack_observable``.

A send returns its packet id at once (docs/protocol.md 6.6); the server's PACKET_ACK comes later,
or, when the application asks late, may already have come. ``AckBook`` serves both cases: acks
that arrive are kept in a bounded cache (oldest dropped first), and whoever asks before the ack
arrives leaves a one-shot waiter that the ack calls. A waiter whose timeout fires or whose
subscription is disposed is forgotten, so waiters never pile up. When the user closes,
``fail_all`` fails every waiter, so nobody waits forever for an ack that cannot come.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from mimc_rx.errors import SendTimeout
from mimc_rx.protocol.events import ServerAck

__all__ = ["DEFAULT_ACK_TIMEOUT", "AckBook"]

log = logging.getLogger(__name__)

DEFAULT_ACK_TIMEOUT = 10.0
"""Seconds ``ack()`` waits for the server's PACKET_ACK by default."""


_Waiter = tuple[Callable[[ServerAck], None], Callable[[Exception], None]]
"""What a waiter leaves: called with the ack, or with the error that ends the wait."""


class AckBook:
    """The acks received so far (bounded) and the callbacks waiting for the next ones.

    Args:
        cache_size: how many acks are kept for askers that come after the ack.
        default_scheduler: where ack timeouts run when the caller names no scheduler.
    """

    __slots__ = ("_cache", "_cache_size", "_default_scheduler", "_waiters")

    def __init__(self, cache_size: int, default_scheduler: Callable[[], abc.SchedulerBase]) -> None:
        self._cache: OrderedDict[str, ServerAck] = OrderedDict()
        self._cache_size = cache_size
        self._default_scheduler = default_scheduler
        self._waiters: dict[str, list[_Waiter]] = {}

    @property
    def waiting(self) -> int:
        """How many packet ids somebody is waiting for."""
        return len(self._waiters)

    def record(self, ack: ServerAck) -> None:
        """Remember ``ack`` and call whoever waits for it (a waiter that raises is logged)."""
        cache = self._cache
        cache[ack.packet_id] = ack
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        if self._waiters:
            waiters = self._waiters.pop(ack.packet_id, None)
            if waiters:
                for on_ack, _on_error in waiters:
                    try:
                        on_ack(ack)
                    except Exception:
                        log.exception("an ack waiter raised")

    def fail_all(self, error: Exception) -> None:
        """Fail every waiter with ``error`` (the user closed; no ack will come any more)."""
        waiters, self._waiters = self._waiters, {}
        for pairs in waiters.values():
            for _on_ack, on_error in pairs:
                try:
                    on_error(error)
                except Exception:
                    log.exception("an ack waiter raised")

    def observable(
        self,
        packet_id: str,
        timeout: float | None,
        scheduler: abc.SchedulerBase | None = None,
    ) -> Observable[ServerAck]:
        """See ``MIMCUser.ack_observable``."""

        def subscribe(
            observer: abc.ObserverBase[ServerAck], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            cached = self._cache.get(packet_id)
            if cached is not None:
                observer.on_next(cached)
                observer.on_completed()
                return Disposable()
            done = False
            timer: abc.DisposableBase | None = None

            def forget() -> None:
                waiters = self._waiters.get(packet_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[packet_id]

            def on_ack(ack: ServerAck) -> None:
                nonlocal done
                if done:
                    return
                done = True
                if timer is not None:
                    timer.dispose()
                observer.on_next(ack)
                observer.on_completed()

            def on_timeout(_scheduler: abc.SchedulerBase, _state: object = None) -> None:
                nonlocal done
                if done:
                    return
                done = True
                forget()
                observer.on_error(SendTimeout(packet_id, timeout or 0.0))

            def on_closed(error: Exception) -> None:
                nonlocal done
                if done:
                    return
                done = True
                if timer is not None:
                    timer.dispose()
                observer.on_error(error)

            def dispose() -> None:
                nonlocal done
                done = True
                if timer is not None:
                    timer.dispose()
                forget()

            waiter: _Waiter = (on_ack, on_closed)
            self._waiters.setdefault(packet_id, []).append(waiter)
            if timeout is not None:
                sched = scheduler or sub_scheduler or self._default_scheduler()
                timer = sched.schedule_relative(timeout, on_timeout)
            return Disposable(dispose)

        return reactivex.create(subscribe)

    async def wait(self, packet_id: str, timeout: float | None) -> ServerAck:  # noqa: ASYNC109
        """See ``MIMCUser.ack``: the ack of ``packet_id``, awaited on the running loop."""
        future: asyncio.Future[ServerAck] = asyncio.get_running_loop().create_future()

        def on_next(ack: ServerAck) -> None:
            if not future.done():
                future.set_result(ack)

        def on_error(error: Exception) -> None:
            if not future.done():
                future.set_exception(error)

        subscription = self.observable(packet_id, timeout).subscribe(on_next, on_error)
        try:
            return await future
        finally:
            subscription.dispose()
