"""The connection lifecycle behind ``MIMCUser``: log in, one attempt at a time, log out.

Theory of operation. One login attempt is one ``SessionLink`` (``mimc_rx.client.link``), whose
parts a ``Connector`` makes step by step (``mimc_rx.client.attempt``): a token, a fresh
``ClientSession`` with the user's ``SessionMemory``, an open transport. The lifecycle then
waits for the BIND result on the link's login waiter.

Each batch of events of a link comes here first: every event goes to the user's router
(``publish``, which republishes it on the streams), and the few that decide a link's fate (the
BIND result, KICK, a protocol failure) are applied to the link at their place in the batch.

What keeps the account online afterwards is the ``Supervisor`` (``mimc_rx.client.supervisor``):
it retries a first login that failed for a transient reason, watches each link until it ends,
and reconnects with backoff. ``ConnectionManager`` makes the attempts it asks for.

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
from .reconnect import Backoff
from .seams import Transport, UserSession
from .streams import UserStreams
from .supervisor import Supervisor
from .values import OFFLINE, DisconnectReason, offline_status

__all__ = ["ConnectionManager"]

log = logging.getLogger(__name__)

# The err_type of a failed BIND wait that another attempt may cure (_await_bind, Supervisor.watch);
# a refusal carries the server's words.
_TRANSIENT_BIND = frozenset({"login timeout", "disconnected"})

_ABORTED = offline_status(
    "login aborted",
    "logout during login",
    "logout() or close() was called while the login was in flight",
)


class ConnectionManager:
    """Logs one account in and out, one ``SessionLink`` at a time, and holds its state.

    Its ``supervisor`` (a ``Supervisor``) keeps the account online between the attempts.

    Args:
        connector: makes the parts of each attempt.
        policy: the reconnect backoff (for the supervisor).
        scheduler: where backoff timers run; an ``AsyncIOScheduler`` on the login loop if None.
        rng: the jitter source of the backoff (for the supervisor).
        streams: the user's streams; status, events, disconnects and reconnects are fed here.
        publish: republishes one core event on the streams (the user's ``EventRouter``).
        name: the account, for log lines.
        login_retries: how many more attempts a first login makes after a transient failure
            (for the supervisor).
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
        self._streams = streams
        self._publish = publish
        self._name = name
        self.transient = False  # the last attempt failed in a way another attempt may cure

        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock: asyncio.Lock | None = None
        self.link: SessionLink | None = None
        self.uuid: int | None = None
        self.token: str | None = None
        self.generation = 0  # a logout or a cancelled login moves it on; attempts compare
        self._background: set[asyncio.Task[Any]] = set()
        self.supervisor = Supervisor(
            self,
            policy=policy,
            rng=rng,
            streams=streams,
            name=name,
            login_retries=login_retries,
        )

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
        attempt = self.supervisor.reconnecting_attempt
        if attempt is not None:
            return f"reconnecting (attempt {attempt})"
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
            self.lock = asyncio.Lock()
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

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` as a task we keep a reference to until it ends (so it is not lost)."""
        assert self.loop is not None
        task = self.loop.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _close_soon(self, transport: Transport, why: str) -> None:
        self._spawn(transport.close(self.connector.transport_options.close_timeout), why)

    def is_current(self, link: SessionLink, what: str) -> bool:
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
        assert self.lock is not None
        supervisor = self.supervisor
        supervisor.start()
        try:
            async with self.lock:
                if self.is_logged_in:
                    return self._streams.status.latest or OFFLINE
                status = await supervisor.retry_login(await self.connect_once())
        except asyncio.CancelledError:
            # The caller gave up (wait_for, a notebook interrupt): do not stay online for it.
            supervisor.want_online = False
            raise
        if not status.online:
            supervisor.want_online = False
        return status

    async def logout(self, timeout: float) -> None:  # noqa: ASYNC109
        """See ``MIMCUser.logout``."""
        self.supervisor.stop()
        self.generation += 1  # an attempt in flight notices this after its next await
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

    async def connect_once(self) -> StatusChange:
        """One full attempt: token, session, transport, BIND. Returns (and publishes) the outcome.

        A logout or close during the attempt (the generation changed) ends it offline; a
        cancellation closes the transport it opened before propagating.
        """
        loop = self.ensure_loop()
        generation = self.generation
        self.transient = True  # the fetch, the connect and a BIND wait without answer
        answer = await self.connector.fetch_token()
        if isinstance(answer, StatusChange):
            return self.publish_status(answer)
        self.transient = False
        if self.generation != generation:
            return self.publish_status(_ABORTED)
        session, events, refusal = self.connector.start_session(answer, now=loop.time())
        for event in events:
            self._streams.events.publish(event)
        if refusal is not None:
            return self.publish_status(refusal)  # no connection needed (6.1 step 5)
        self.transient = True

        link = SessionLink(session, loop.create_future(), generation)
        opened = await self.connector.open_transport(
            session, lambda batch: self._on_link_events(link, batch)
        )
        if isinstance(opened, StatusChange):
            return self.publish_status(opened)
        if self.generation != generation:
            await opened.close(self.connector.transport_options.close_timeout)
            return self.publish_status(_ABORTED)
        link.transport = opened
        self.link = link
        link.supervisor = loop.create_task(self.supervisor.watch(link), name="mimc-rx supervisor")
        status = await self._await_bind(link, opened)
        self.transient = not status.online and status.err_type in _TRANSIENT_BIND
        return status

    async def _await_bind(self, link: SessionLink, transport: Transport) -> StatusChange:
        """The BIND result of ``link``; a timeout or a cancellation closes the transport."""
        timeout = self.connector.login_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(link.login_waiter), timeout)
        except asyncio.CancelledError:
            # Nobody will use this link: close it now rather than let it BIND later.
            link.ending(DisconnectReason.LOGIN_FAILED, "login cancelled")
            self.generation += 1
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
                    if self.is_current(link, "a KICK"):
                        link.kicked(event)
                case ProtocolFailure():
                    log.warning("protocol failure from server: %s %s", event.reason, event.detail)
                    link.protocol_failed(event)
                case _:
                    pass

    def _on_bind_result(self, link: SessionLink, status: StatusChange) -> None:
        """A BIND result from the core: publish it and resolve the login waiter."""
        if not self.is_current(link, "a BIND result"):
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
