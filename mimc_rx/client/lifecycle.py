"""The connection lifecycle behind ``MIMCUser``: log in, supervise, reconnect, log out.

Theory of operation. One login attempt is one ``SessionLink`` (``mimc_rx.client.link``), whose
parts a ``Connector`` makes step by step (``mimc_rx.client.attempt``): a token, a fresh
``ClientSession`` with the user's ``SessionMemory``, an open transport. The lifecycle then
waits for the BIND result on the link's login waiter.

Each batch of events of a link comes here first: every event goes to the user's router
(``publish``, which republishes it on the streams), and the few that decide a link's fate (the
BIND result, KICK, a protocol failure) are applied to the link at their place in the batch.

A supervisor task per link waits for the transport to end, publishes ``Disconnected`` (and an
offline ``StatusChange`` when we had been online), and hands unexpected losses to the
``Reconnector``, which schedules new attempts with backoff on the injected scheduler. Each
attempt fetches a fresh token. A KICK or our own logout ends reconnecting for good.

A first ``login()`` that fails for a transient reason (the token fetch failed, the server was
unreachable, no BIND result in time, the connection dropped before BIND) is tried again with the
reconnect backoff, up to ``login_retries`` more times, before ``login()`` returns the failure: a
storm of logins, or a server restarting, must not leave users offline for good. A refusal (a bad
token answer, BIND refused) is final at once.

``ConnectionManager`` owns the loop it runs on: the first ``login()`` binds it to the running
loop, and everything after (timers, tasks, emissions) happens there.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from mimc_rx.errors import NotLoggedIn
from mimc_rx.protocol.events import ClientEvent, Kicked, ProtocolFailure, StatusChange

from .attempt import Connector
from .link import SessionLink
from .reconnect import Backoff, Reconnector
from .seams import Transport, UserSession
from .streams import UserStreams
from .values import OFFLINE, Disconnected, DisconnectReason, Reconnecting, offline_status

__all__ = ["ConnectionManager"]

log = logging.getLogger(__name__)

# The err_type of a failed BIND wait that another attempt may cure (_await_bind, _supervise);
# a refusal carries the server's words.
_TRANSIENT_BIND = frozenset({"login timeout", "disconnected"})

_ABORTED = offline_status(
    "login aborted",
    "logout during login",
    "logout() or close() was called while the login was in flight",
)


class ConnectionManager:
    """Logs one account in and keeps it online, one ``SessionLink`` at a time.

    Args:
        connector: makes the parts of each attempt.
        policy: the reconnect backoff.
        scheduler: where backoff timers run; an ``AsyncIOScheduler`` on the login loop if None.
        rng: the jitter source of the backoff.
        streams: the user's streams; status, events, disconnects and reconnects are fed here.
        publish: republishes one core event on the streams (the user's ``EventRouter``).
        name: the account, for log lines.
        login_retries: how many more attempts a first login makes after a transient failure.
    """

    def __init__(
        self,
        *,
        connector: Connector,
        policy: Backoff,
        scheduler: abc.SchedulerBase | None,
        rng: random.Random | None,
        streams: UserStreams,
        publish: Callable[[ClientEvent], None],
        name: str,
        login_retries: int = 3,
    ) -> None:
        self.connector = connector
        self.policy = policy
        self._scheduler = scheduler
        self._rng = rng
        self._streams = streams
        self._publish = publish
        self._name = name
        self.login_retries = login_retries
        self._transient = False  # the last attempt failed in a way another attempt may cure

        self.loop: asyncio.AbstractEventLoop | None = None
        self.link: SessionLink | None = None
        self.uuid: int | None = None
        self.token: str | None = None
        self._lock: asyncio.Lock | None = None
        self._want_online = False
        self._reconnector: Reconnector | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ state

    @property
    def is_connected(self) -> bool:
        """True while a transport is open."""
        link = self.link
        return link is not None and link.transport is not None and link.transport.is_open

    @property
    def is_logged_in(self) -> bool:
        """True while bound (BIND succeeded and the link has not ended)."""
        link = self.link
        return link is not None and link.bound and link.end is None

    @property
    def state_word(self) -> str:
        """``online``, ``reconnecting (attempt N)``, ``connecting`` or ``offline``, for display."""
        if self.is_logged_in:
            return "online"
        reconnector = self._reconnector
        if reconnector is not None and reconnector.active:
            return f"reconnecting (attempt {reconnector.attempt})"
        if self.is_connected:
            return "connecting"
        return "offline"

    def bound(self, action: str) -> tuple[UserSession, Transport, float]:
        """The session and transport to run a command on, and the loop time.

        Raises:
            NotLoggedIn: no usable link (``action`` says what was refused).
        """
        link = self.link
        if self.loop is not None and self.loop.is_closed():
            raise RuntimeError(self._loop_gone())
        if link is None or not link.usable:
            raise NotLoggedIn(action)
        assert self.loop is not None
        assert link.transport is not None
        return link.session, link.transport, self.loop.time()

    def ensure_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; the first call binds the user to it.

        Raises:
            RuntimeError: called from another loop than the first one.
        """
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            self._lock = asyncio.Lock()
        elif self.loop is not loop:
            if self.loop.is_closed():
                raise RuntimeError(self._loop_gone())
            raise RuntimeError("a MIMCUser is bound to the event loop of its first login()")
        return loop

    def _loop_gone(self) -> str:
        return (
            f"MIMCUser {self._name!r} was bound to the event loop of its first login(), and "
            "that loop is gone (closed, as at the end of asyncio.run()): make a new MIMCUser "
            "inside each asyncio.run(), or run the whole program in one asyncio.run()"
        )

    def scheduler(self) -> abc.SchedulerBase:
        """The injected scheduler, or an ``AsyncIOScheduler`` on the user's loop."""
        if self._scheduler is None:
            loop = self.loop or asyncio.get_running_loop()
            self._scheduler = AsyncIOScheduler(loop)
        return self._scheduler

    def _get_reconnector(self) -> Reconnector:
        if self._reconnector is None:
            self._reconnector = Reconnector(
                self.policy,
                self._reconnect_due,
                scheduler=self.scheduler(),
                on_scheduled=self._streams.reconnects.publish,
                rng=self._rng,
            )
        return self._reconnector

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` as a task we keep a reference to until it ends (so it is not lost)."""
        assert self.loop is not None
        task = self.loop.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _close_soon(self, transport: Transport, why: str) -> None:
        self._spawn(transport.close(self.connector.transport_options.close_timeout), why)

    def _is_current(self, link: SessionLink, what: str) -> bool:
        """True when ``link`` is the current link; logs ``what`` was ignored otherwise."""
        if link is self.link:
            return True
        log.info("ignoring %s from a stale connection of %s", what, self._name)
        return False

    def publish_status(self, status: StatusChange) -> StatusChange:
        """Emit ``status`` on the status stream and return it."""
        self._streams.status.publish(status)
        return status

    # ------------------------------------------------------------------ login / logout

    async def login(self) -> StatusChange:
        """See ``MIMCUser.login``."""
        self.ensure_loop()
        assert self._lock is not None
        self._want_online = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        try:
            async with self._lock:
                if self.is_logged_in:
                    return self._streams.status.latest or OFFLINE
                status = await self._connect_once()
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
                    if not self._want_online:
                        break
                    status = await self._connect_once()
        except asyncio.CancelledError:
            # The caller gave up (wait_for, a notebook interrupt): do not stay online for it.
            self._want_online = False
            raise
        if not status.online:
            self._want_online = False
        return status

    def _retry_login(self, status: StatusChange, attempt: int) -> bool:
        """Whether a failed first-login attempt is tried again (module docstring)."""
        return (
            not status.online
            and self._want_online
            and self.policy.enabled
            and self._transient
            and attempt < self.login_retries
            and not self.policy.gives_up_after(attempt + 1)
        )

    async def logout(self, timeout: float) -> None:  # noqa: ASYNC109
        """See ``MIMCUser.logout``."""
        self._want_online = False
        self._generation += 1  # an attempt in flight notices this after its next await
        if self._reconnector is not None:
            self._reconnector.cancel()
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()
        link = self.link
        if link is None or link.transport is None:
            return
        link.ending(DisconnectReason.LOGOUT)
        transport = link.transport
        if link.bound and transport.is_open:
            loop = self.ensure_loop()
            link.session.logout(now=loop.time())
            transport.wake()
            try:
                await asyncio.wait_for(transport.wait_closed(), timeout)
            except TimeoutError:
                await transport.close(timeout)
        elif transport.is_open:
            await transport.close(timeout)
        if link.supervisor is not None:
            await asyncio.shield(link.supervisor)

    async def _connect_once(self) -> StatusChange:
        """One full attempt: token, session, transport, BIND. Returns (and publishes) the outcome.

        A logout or close during the attempt (the generation changed) ends it offline; a
        cancellation closes the transport it opened before propagating.
        """
        loop = self.ensure_loop()
        generation = self._generation
        self._transient = True  # the fetch, the connect and a BIND wait without answer
        answer = await self.connector.fetch_token()
        if isinstance(answer, StatusChange):
            return self.publish_status(answer)
        self._transient = False
        if self._generation != generation:
            return self.publish_status(_ABORTED)
        session, events, refusal = self.connector.start_session(answer, now=loop.time())
        for event in events:
            self._streams.events.publish(event)
        if refusal is not None:
            return self.publish_status(refusal)  # no connection needed (6.1 step 5)
        self._transient = True

        link = SessionLink(session, loop.create_future(), generation)
        opened = await self.connector.open_transport(
            session, lambda batch: self._on_link_events(link, batch)
        )
        if isinstance(opened, StatusChange):
            return self.publish_status(opened)
        if self._generation != generation:
            await opened.close(self.connector.transport_options.close_timeout)
            return self.publish_status(_ABORTED)
        link.transport = opened
        self.link = link
        link.supervisor = loop.create_task(self._supervise(link), name="mimc-rx supervisor")
        status = await self._await_bind(link, opened)
        self._transient = not status.online and status.err_type in _TRANSIENT_BIND
        return status

    async def _await_bind(self, link: SessionLink, transport: Transport) -> StatusChange:
        """The BIND result of ``link``; a timeout or a cancellation closes the transport."""
        timeout = self.connector.login_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(link.login_waiter), timeout)
        except asyncio.CancelledError:
            # Nobody will use this link: close it now rather than let it BIND later.
            link.ending(DisconnectReason.LOGIN_FAILED, "login cancelled")
            self._generation += 1
            self._close_soon(transport, "mimc-rx cancelled login")
            raise
        except TimeoutError:
            link.ending(DisconnectReason.LOGIN_FAILED, "login timed out")
            await transport.close(self.connector.transport_options.close_timeout)
            url = self.connector.url
            return self.publish_status(
                offline_status(
                    "login timeout", "no BIND result", f"no answer from {url} within {timeout:g} s"
                )
            )

    # ------------------------------------------------------------------ events of a link

    def _on_link_events(self, link: SessionLink, events: Sequence[ClientEvent]) -> None:
        """Republish a batch of ``link``'s events; apply the ones that decide its fate."""
        publish = self._publish
        for event in events:
            publish(event)
            match event:
                case StatusChange():
                    self._on_bind_result(link, event)
                case Kicked():
                    if self._is_current(link, "a KICK"):
                        link.kicked(event)
                case ProtocolFailure():
                    log.warning("protocol failure from server: %s %s", event.reason, event.detail)
                    link.protocol_failed(event)
                case _:
                    pass

    def _on_bind_result(self, link: SessionLink, status: StatusChange) -> None:
        """A BIND result from the core: publish it and resolve the login waiter."""
        if not self._is_current(link, "a BIND result"):
            link.settle_login(status)
            return
        if link.bind_result(status):
            if link.transport is not None and self.loop is not None:
                self._close_soon(link.transport, "mimc-rx close refused")
        elif status.online:
            self.uuid = link.session.uuid
            self.token = link.session.token
        self.publish_status(status)
        link.settle_login(status)

    # ------------------------------------------------------------------ supervision

    async def _supervise(self, link: SessionLink) -> None:
        """Wait for a link to end, report it, and start reconnecting when it should."""
        assert link.transport is not None
        info = await link.transport.wait_closed()
        reason, detail = link.closed(info)
        if not self._is_current(link, f"the end ({reason.value})"):
            # A newer link replaced this one: its fate must not touch the newer one.
            link.settle_login(OFFLINE)
            return
        stale = link.generation != self._generation  # logged out or cancelled since
        was_bound = link.bound
        if not link.login_waiter.done() or was_bound:
            offline = self.publish_status(offline_status("disconnected", reason.value, detail))
            link.settle_login(offline)
        terminal = reason in (DisconnectReason.LOGOUT, DisconnectReason.KICKED)
        if terminal and not stale:
            self._want_online = False
        will_reconnect = (
            self._want_online and not terminal and not stale and self._should_retry(was_bound)
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

    def _reconnect_due(self, attempt: int) -> None:
        loop = self.loop
        if loop is None or not self._want_online:
            # Stop the schedule too, so a later connection loss can start a new one.
            if self._reconnector is not None:
                self._reconnector.cancel()
            return
        self._reconnect_task = loop.create_task(
            self._reconnect(attempt), name=f"mimc-rx reconnect {attempt}"
        )

    async def _reconnect(self, attempt: int) -> None:
        reconnector = self._get_reconnector()
        assert self._lock is not None
        async with self._lock:
            if not self._want_online or self.is_logged_in:
                reconnector.attempt_succeeded()
                return
            log.info("reconnect attempt %d for %s", attempt, self._name)
            status = await self._connect_once()
        if status.online:
            reconnector.attempt_succeeded()
        elif not self._want_online:
            reconnector.cancel()
        elif not reconnector.attempt_failed():
            self._want_online = False
            self.publish_status(
                offline_status(
                    "reconnect failed",
                    f"gave up after {attempt} attempts",
                    status.err_desc or status.err_reason,
                )
            )
