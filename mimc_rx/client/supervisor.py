"""``Supervisor``: keeps one account online once ``login()`` asked for it.

It owns the wish to be online and everything that acts on it after the first attempt:

* first-login retries: a first ``login()`` that failed for a transient reason (the token fetch
  failed, the server was unreachable, no BIND result in time, the connection dropped before
  BIND) is tried again with the reconnect backoff, up to ``login_retries`` more times; a
  refusal (a bad token answer, BIND refused) is final at once;
* the watch over each link: wait for its transport to end, publish ``Disconnected`` (and an
  offline ``StatusChange`` when we had been online), and decide whether to reconnect;
* reconnects: a ``Reconnector`` (``mimc_rx.client.reconnect``) schedules attempts with the
  ``Backoff`` on the injected scheduler; each attempt is a full one (a fresh token). A KICK or
  our own logout ends reconnecting for good.

The attempts themselves, the current link and the loop belong to the ``ConnectionManager``
(``mimc_rx.client.lifecycle``), seen here through the small ``Attempts`` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from mimc_rx.protocol.events import StatusChange

from .link import SessionLink
from .reconnect import Backoff, Reconnector, TimerScheduler
from .streams import UserStreams
from .values import OFFLINE, Disconnected, DisconnectReason, Reconnecting, offline_status

__all__ = ["Attempts", "Supervisor"]

log = logging.getLogger(__name__)


class Attempts(Protocol):
    """What the supervisor needs from the lifecycle (``ConnectionManager``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    @property
    def lock(self) -> asyncio.Lock | None: ...

    @property
    def generation(self) -> int: ...

    @property
    def transient(self) -> bool: ...

    @property
    def is_logged_in(self) -> bool: ...

    def scheduler(self) -> TimerScheduler: ...

    def is_current(self, link: SessionLink, what: str) -> bool: ...

    def publish_status(self, status: StatusChange) -> StatusChange: ...

    async def connect_once(self) -> StatusChange: ...


class Supervisor:
    """Retries a first login, watches each link, and reconnects with backoff.

    Args:
        attempts: makes one attempt at a time and knows the current link.
        policy: the reconnect backoff (also paces first-login retries).
        rng: the jitter source of the backoff.
        streams: the user's streams; disconnects and reconnects are fed here.
        name: the account, for log lines.
        login_retries: how many more attempts a first login makes after a transient failure.
    """

    def __init__(
        self,
        attempts: Attempts,
        *,
        policy: Backoff,
        rng: random.Random | None,
        streams: UserStreams,
        name: str,
        login_retries: int,
    ) -> None:
        self._attempts = attempts
        self.policy = policy
        self._rng = rng
        self._streams = streams
        self._name = name
        self.login_retries = login_retries
        self.want_online = False
        self._reconnector: Reconnector | None = None
        self._reconnect_task: asyncio.Task[None] | None = None

    @property
    def reconnecting_attempt(self) -> int | None:
        """The number of the reconnect attempt scheduled or running; None when not reconnecting."""
        reconnector = self._reconnector
        if reconnector is not None and reconnector.active:
            return reconnector.attempt
        return None

    def start(self) -> None:
        """``login()`` wants the account online: a scheduled reconnect gives way to it."""
        self.want_online = True
        if self._reconnector is not None:
            self._reconnector.cancel()

    def stop(self) -> None:
        """``logout()``: stay offline, and call off any reconnect scheduled or running."""
        self.want_online = False
        if self._reconnector is not None:
            self._reconnector.cancel()
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()

    # ------------------------------------------------------------------ first login

    async def retry_login(self, status: StatusChange) -> StatusChange:
        """Try a failed first login again while it may help (module docstring); the last status."""
        attempt = 0
        while self._retry_login(status, attempt):
            attempt += 1
            delay = self.policy.delay(attempt, self._rng)
            log.info(
                "login of %s failed (%s); retry %d in %.2f s",
                self._name,
                status.err_type,
                attempt,
                delay,
            )
            self._streams.reconnects.publish(Reconnecting(attempt=attempt, delay=delay))
            await asyncio.sleep(delay)
            if not self.want_online:
                break
            status = await self._attempts.connect_once()
        return status

    def _retry_login(self, status: StatusChange, attempt: int) -> bool:
        return (
            not status.online
            and self.want_online
            and self.policy.enabled
            and self._attempts.transient
            and attempt < self.login_retries
            and not self.policy.gives_up_after(attempt + 1)
        )

    # ------------------------------------------------------------------ the watch over a link

    async def watch(self, link: SessionLink) -> None:
        """Wait for a link to end, report it, and start reconnecting when it should."""
        attempts = self._attempts
        assert link.transport is not None
        info = await link.transport.wait_closed()
        reason, detail = link.closed(info)
        if not attempts.is_current(link, f"the end ({reason.value})"):
            # A newer link replaced this one: its fate must not touch the newer one.
            link.settle_login(OFFLINE)
            return
        stale = link.generation != attempts.generation  # logged out or cancelled since
        was_bound = link.bound
        if not link.login_waiter.done() or was_bound:
            offline = attempts.publish_status(offline_status("disconnected", reason.value, detail))
            link.settle_login(offline)
        terminal = reason in (DisconnectReason.LOGOUT, DisconnectReason.KICKED)
        if terminal and not stale:
            self.want_online = False
        will_reconnect = (
            self.want_online and not terminal and not stale and self._should_retry(was_bound)
        )
        self._streams.disconnects.publish(
            Disconnected(
                reason=reason, detail=detail, code=info.code, will_reconnect=will_reconnect
            )
        )
        if was_bound and will_reconnect:
            self._get_reconnector().connection_lost()

    def _should_retry(self, was_bound: bool) -> bool:
        """Whether the policy allows another attempt after a link that did or did not bind."""
        if not self.policy.enabled:
            return False
        if was_bound:
            return True
        reconnector = self._get_reconnector()
        # A reconnect attempt that failed after opening: retry unless that was the last one.
        return reconnector.active and not self.policy.gives_up_after(reconnector.attempt)

    # ------------------------------------------------------------------ reconnects

    def _get_reconnector(self) -> Reconnector:
        if self._reconnector is None:
            self._reconnector = Reconnector(
                self.policy,
                self._reconnect_due,
                scheduler=self._attempts.scheduler(),
                on_scheduled=self._streams.reconnects.publish,
                rng=self._rng,
            )
        return self._reconnector

    def _reconnect_due(self, attempt: int) -> None:
        loop = self._attempts.loop
        if loop is None or not self.want_online:
            # Stop the schedule too, so a later connection loss can start a new one.
            if self._reconnector is not None:
                self._reconnector.cancel()
            return
        self._reconnect_task = loop.create_task(
            self._reconnect(attempt), name=f"mimc-rx reconnect {attempt}"
        )

    async def _reconnect(self, attempt: int) -> None:
        attempts = self._attempts
        reconnector = self._get_reconnector()
        assert attempts.lock is not None
        async with attempts.lock:
            if not self.want_online or attempts.is_logged_in:
                reconnector.attempt_succeeded()
                return
            log.info("reconnect attempt %d for %s", attempt, self._name)
            status = await attempts.connect_once()
        if status.online:
            reconnector.attempt_succeeded()
        elif not self.want_online:
            reconnector.cancel()
        elif not reconnector.attempt_failed():
            self.want_online = False
            attempts.publish_status(
                offline_status(
                    "reconnect failed",
                    f"gave up after {attempt} attempts",
                    status.err_desc or status.err_reason,
                )
            )
