"""Automatic reconnect: the backoff policy and the scheduler-driven retry loop.

The web SDK never reconnects (docs/protocol.md 10.14); the TCP SDKs retry with a doubling delay,
capped at 30 s, with +/-50 % jitter (docs/protocol.md 7). ``Backoff`` describes such a policy as a
value; ``Reconnector`` applies it. The reconnector owns no I/O and no asyncio: it schedules the
next attempt on an Rx scheduler and calls back, and the facade reports how the attempt went.
That is what lets tests run hours of backoff in microseconds on a ``TestScheduler``.

Lifecycle::

    connection_lost()  -> schedule attempt 1 after delay(1)
    attempt N fires    -> the facade connects, fetches a fresh token, BINDs...
    attempt_failed()   -> schedule attempt N+1 after delay(N+1), or give up
    attempt_succeeded()-> back to idle; the next loss starts again at attempt 1
    cancel()           -> drop whatever is scheduled (logout, kick)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .values import Reconnecting

__all__ = ["Backoff", "Reconnector", "TimerHandle", "TimerScheduler"]


class TimerHandle(Protocol):
    """A scheduled action that can still be called off (an Rx ``Disposable``)."""

    def dispose(self) -> None: ...


class TimerScheduler(Protocol):
    """The one thing the reconnector needs from a scheduler: run an action after a delay.

    Every Rx scheduler has it (``AsyncIOScheduler`` in production, ``TestScheduler`` in
    tests); naming it here keeps this module free of the reactive layer.
    """

    def schedule_relative(
        self, duetime: Any, action: Callable[[Any, Any], Any], state: Any = None
    ) -> TimerHandle: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with jitter.

    Attempt ``n`` (from 1) waits ``min(max_delay, initial * factor ** (n - 1))``, scaled by a
    random factor in ``[1 - jitter, 1 + jitter]``, and never more than ``max_delay``.

    Attributes:
        enabled: false turns automatic reconnect off.
        initial: the first delay, in seconds.
        factor: how much each failed attempt multiplies the delay.
        max_delay: the cap, in seconds.
        jitter: relative spread; 0.5 means +/-50 % (what the C++ SDK uses).
        max_attempts: give up after this many failed attempts in a row; None retries forever.
    """

    enabled: bool = True
    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_delay < 0:
            raise ValueError("backoff delays must not be negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")

    @classmethod
    def disabled(cls) -> Backoff:
        """A policy that never reconnects."""
        return cls(enabled=False)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before attempt number ``attempt`` (1 for the first retry)."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # Cap the exponent too: factor ** 10_000 would overflow a float.
        base = self.initial * self.factor ** min(attempt - 1, 64)
        base = min(self.max_delay, base)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            base *= 1.0 + spread
        return max(0.0, min(self.max_delay, base))

    def gives_up_after(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` was the last one allowed."""
        return self.max_attempts is not None and attempt >= self.max_attempts


class Reconnector:
    """Runs a ``Backoff`` on a scheduler: when to try again, and when to stop.

    Args:
        policy: the backoff to apply.
        attempt: called (on the scheduler) with the attempt number when it is time to try.
            The caller must later report ``attempt_failed()`` or ``attempt_succeeded()``.
        scheduler: where delays run; an ``AsyncIOScheduler`` in production, a
            ``TestScheduler`` in tests.
        on_scheduled: told about each scheduled attempt (feeds ``user.reconnects``).
        rng: the jitter source; inject a seeded one for reproducible tests.
    """

    def __init__(
        self,
        policy: Backoff,
        attempt: Callable[[int], None],
        *,
        scheduler: TimerScheduler,
        on_scheduled: Callable[[Reconnecting], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._attempt_cb = attempt
        self._scheduler = scheduler
        self._on_scheduled = on_scheduled
        self._rng = rng or random.Random()
        self._attempt = 0
        self._pending: TimerHandle | None = None
        self._running = False

    @property
    def attempt(self) -> int:
        """The number of the attempt scheduled or running; 0 when idle."""
        return self._attempt

    @property
    def active(self) -> bool:
        """True while an attempt is scheduled or running."""
        return self._pending is not None or self._running

    def connection_lost(self) -> bool:
        """Start retrying after an unexpected disconnect. Returns whether a retry is scheduled."""
        if not self.policy.enabled:
            return False
        if self.active:
            return True
        self._attempt = 0
        return self._schedule_next()

    def attempt_failed(self) -> bool:
        """The running attempt failed; schedule the next one. Returns False when giving up."""
        self._running = False
        if not self.policy.enabled or self.policy.gives_up_after(self._attempt):
            self._attempt = 0
            return False
        return self._schedule_next()

    def attempt_succeeded(self) -> None:
        """The running attempt logged in; the next loss starts from attempt 1 again."""
        self._running = False
        self._attempt = 0

    def cancel(self) -> None:
        """Forget any scheduled attempt (logout, kick, or the user gave up)."""
        if self._pending is not None:
            self._pending.dispose()
            self._pending = None
        self._running = False
        self._attempt = 0

    def _schedule_next(self) -> bool:
        self._attempt += 1
        number = self._attempt
        delay = self.policy.delay(number, self._rng)

        def fire(_scheduler: object, _state: object = None) -> None:
            self._pending = None
            self._running = True
            self._attempt_cb(number)

        self._pending = self._scheduler.schedule_relative(delay, fire)
        if self._on_scheduled is not None:
            self._on_scheduled(Reconnecting(attempt=number, delay=delay))
        return True
