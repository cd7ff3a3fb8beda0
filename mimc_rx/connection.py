"""The connection lifecycle behind ``MIMCUser``: connect, supervise, reconnect.

Theory of operation. One *connection* (a ``Connection``) is one attempt: fetch a token, create
a ``ClientSession``, ``login`` it, open a transport, wait for the BIND result on the
connection's login waiter. Each attempt gets a fresh ``Connection`` object, so the fate of an
old websocket (a late close, a late event) never mixes with a new one.

A supervisor task per connection waits for the transport to end, publishes ``Disconnected``
(and an offline ``StatusChange`` when we had been online), and hands unexpected losses to the
``Reconnector``, which schedules new attempts with backoff on the injected scheduler. Each
attempt fetches a fresh token. A KICK or our own logout ends reconnecting for good.

``ConnectionManager`` owns all of that and the loop it runs on: the first ``login()`` binds it
to the running loop, and everything after (timers, tasks, emissions) happens there. It knows
the status, event, disconnect and reconnect streams; messages and acks are the business of the
facade's ``EventRouter``, which hands back the few core events that change a connection's fate
(``on_status``, ``on_kicked``, ``on_protocol_failure``) in the order they came.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .errors import ConnectionClosed, NotLoggedIn, TokenError
from .http import TokenAnswer, TokenFetcher
from .protocol.events import (
    ClientEvent,
    Kicked,
    PacketId,
    ProtocolFailure,
    StatusChange,
)
from .reconnect import Backoff, Reconnector
from .streams import OFFLINE, Disconnected, DisconnectReason, UserStreams
from .transport import (
    ClientSessionLike,
    CloseInfo,
    TransportOptions,
    WebSocketTransport,
    describe_exception,
)

__all__ = [
    "Connection",
    "ConnectionManager",
    "SessionFactory",
    "SessionLike",
    "TransportFactory",
    "TransportLike",
    "default_session_factory",
    "default_transport_factory",
]

log = logging.getLogger("mimc_rx.user")


class SessionLike(ClientSessionLike, Protocol):
    """What the facade needs from ``mimc_rx.protocol.ClientSession`` (docs/sansio.md)."""

    @property
    def uuid(self) -> int | None: ...
    @property
    def token(self) -> str | None: ...
    def login(self, token_answer: TokenAnswer, now: float) -> None: ...
    def logout(self, now: float) -> None: ...
    def send_p2p(
        self, to_account: str, payload: bytes, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def send_p2t(
        self, topic_id: int, payload: bytes, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def send_uc(
        self, topic_id: int, payload: bytes, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def join_uc(self, topic_id: int, now: float) -> PacketId: ...
    def quit_uc(self, topic_id: int, now: float) -> PacketId: ...
    def pull(self, now: float) -> PacketId: ...


class TransportLike(Protocol):
    """What the facade needs from a transport (``WebSocketTransport`` or a test fake)."""

    @property
    def is_open(self) -> bool: ...
    async def open(self) -> None: ...
    def wake(self) -> None: ...
    async def wait_closed(self) -> CloseInfo: ...
    async def close(self, timeout: float | None = None) -> CloseInfo: ...  # noqa: ASYNC109


SessionFactory = Callable[[int, str, str], Any]
"""``(app_id, app_account, resource) -> ClientSession``; inject to tune or fake the core."""

TransportFactory = Callable[
    [Any, str, Callable[[Sequence[ClientEvent]], None], TransportOptions], Any
]
"""``(session, url, on_events, options) -> transport``; inject an in-memory one in tests."""


def default_session_factory(
    app_id: int, app_account: str, resource: str, *, ack_pull_notifications: bool = True
) -> Any:
    """The real protocol core, ``mimc_rx.protocol.client.ClientSession``."""
    from .protocol.client import ClientSession

    return ClientSession(
        app_id, app_account, resource, ack_pull_notifications=ack_pull_notifications
    )


def default_transport_factory(
    session: Any,
    url: str,
    on_events: Callable[[Sequence[ClientEvent]], None],
    options: TransportOptions,
) -> Any:
    """A real websocket, ``WebSocketTransport``."""
    return WebSocketTransport(session, url, on_events, options=options)


class Connection:
    """One attempt's session, transport and fate (so an old connection never mixes with a new).

    Attributes:
        session: the protocol core of this attempt.
        transport: set once the transport opened.
        login_waiter: resolves with the BIND result (or the reason there was none).
        bound: true once BIND succeeded; stays true after the end (it *was* online).
        end: why the connection ended (or is ending), once known.
        supervisor: the task waiting for the end of this connection.
        generation: the manager's generation when the attempt started; a logout, a close or a
            cancelled login bumps it, so the fate of an older attempt never decides the newer.
    """

    __slots__ = (
        "bound",
        "end",
        "generation",
        "login_waiter",
        "session",
        "supervisor",
        "transport",
    )

    def __init__(
        self,
        session: SessionLike,
        login_waiter: asyncio.Future[StatusChange],
        generation: int = 0,
    ) -> None:
        self.session = session
        self.generation = generation
        self.transport: TransportLike | None = None
        self.login_waiter = login_waiter
        self.bound = False
        self.end: tuple[DisconnectReason, str] | None = None
        self.supervisor: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        """True while commands may be sent: bound, open and not ending."""
        return self.bound and self.end is None and self.transport is not None


class ConnectionManager:
    """Logs one account in and keeps it online, one ``Connection`` at a time.

    Args:
        new_session: builds a fresh protocol core for each attempt.
        token_fetcher: see ``MIMCUser``; called on every attempt.
        url: the websocket URL.
        login_timeout: seconds an attempt may take, token fetch included.
        transport_options: websocket settings.
        policy: the reconnect backoff.
        scheduler: where backoff timers run; an ``AsyncIOScheduler`` on the login loop if None.
        rng: the jitter source of the backoff.
        transport_factory: builds the transport of each attempt.
        streams: the user's streams; status, events, disconnects and reconnects are fed here.
        on_events: receives each batch of core events of a connection, on the loop.
        on_reconnected: called after an automatic reconnect logged in again.
        name: the account, for log lines.
    """

    def __init__(
        self,
        *,
        new_session: Callable[[], SessionLike],
        token_fetcher: TokenFetcher,
        url: str,
        login_timeout: float,
        transport_options: TransportOptions,
        policy: Backoff,
        scheduler: abc.SchedulerBase | None,
        rng: random.Random | None,
        transport_factory: TransportFactory,
        streams: UserStreams,
        on_events: Callable[[Connection, Sequence[ClientEvent]], None],
        on_reconnected: Callable[[], None],
        name: str,
    ) -> None:
        self._new_session = new_session
        self._fetch = token_fetcher
        self.url = url
        self.login_timeout = login_timeout
        self.transport_options = transport_options
        self.policy = policy
        self._scheduler = scheduler
        self._rng = rng
        self._transport_factory = transport_factory
        self._streams = streams
        self._on_events = on_events
        self._on_reconnected = on_reconnected
        self._name = name

        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Connection | None = None
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
        conn = self.conn
        return conn is not None and conn.transport is not None and conn.transport.is_open

    @property
    def is_logged_in(self) -> bool:
        """True while bound (BIND succeeded and the connection has not ended)."""
        conn = self.conn
        return conn is not None and conn.bound and conn.end is None

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

    def bound(self, action: str) -> tuple[SessionLike, TransportLike, float]:
        """The session and transport to run a command on, and the loop time.

        Raises:
            NotLoggedIn: no usable connection (``action`` says what was refused).
        """
        conn = self.conn
        if conn is None or not conn.usable:
            raise NotLoggedIn(action)
        assert self.loop is not None
        assert conn.transport is not None
        return conn.session, conn.transport, self.loop.time()

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
            raise RuntimeError("a MIMCUser is bound to the event loop of its first login()")
        return loop

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

    def _spawn(self, coro: Any, name: str) -> None:
        """Run ``coro`` as a task we keep a reference to until it ends (so it is not lost)."""
        assert self.loop is not None
        task = self.loop.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _is_current(self, conn: Connection, what: str) -> bool:
        """True when ``conn`` is the current connection; logs ``what`` was ignored otherwise."""
        if conn is self.conn:
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
        except asyncio.CancelledError:
            # The caller gave up (wait_for, a notebook interrupt): do not stay online for it.
            self._want_online = False
            raise
        if not status.online:
            self._want_online = False
        return status

    async def logout(self, timeout: float) -> None:  # noqa: ASYNC109
        """See ``MIMCUser.logout``."""
        self._want_online = False
        self._generation += 1  # an attempt in flight notices this after its next await
        if self._reconnector is not None:
            self._reconnector.cancel()
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()
        conn = self.conn
        if conn is None or conn.transport is None:
            return
        if conn.end is None:
            conn.end = (DisconnectReason.LOGOUT, "")
        transport = conn.transport
        if conn.bound and transport.is_open:
            loop = self.ensure_loop()
            conn.session.logout(now=loop.time())
            transport.wake()
            try:
                await asyncio.wait_for(transport.wait_closed(), timeout)
            except TimeoutError:
                await transport.close(timeout)
        elif transport.is_open:
            await transport.close(timeout)
        if conn.supervisor is not None:
            await asyncio.shield(conn.supervisor)

    async def _fetch_token(self) -> TokenAnswer:
        fetch = self._fetch
        if inspect.iscoroutinefunction(fetch) or inspect.iscoroutinefunction(
            getattr(fetch, "__call__", None)  # noqa: B004 - async callable objects
        ):
            result: Any = await fetch()  # type: ignore[misc]
        else:
            # A sync fetcher may block on HTTP (the web demo's is a blocking XHR): keep it off
            # the loop so a notebook stays responsive.
            result = await asyncio.to_thread(fetch)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    async def _connect_once(self) -> StatusChange:
        """One full attempt: token, session, websocket, BIND. Returns the outcome.

        A logout or close during the attempt (the generation changed) ends it offline; a
        cancellation closes the websocket it opened before propagating.
        """
        loop = self.ensure_loop()
        generation = self._generation
        try:
            answer = await asyncio.wait_for(self._fetch_token(), self.login_timeout)
        except TokenError as exc:
            return self.publish_status(
                StatusChange(
                    online=False,
                    err_type=exc.err_type,
                    err_reason=exc.err_reason,
                    err_desc=exc.err_desc,
                )
            )
        except Exception as exc:
            log.warning("token fetcher failed: %s", describe_exception(exc))
            return self.publish_status(
                StatusChange(
                    online=False,
                    err_type="get token failed",
                    err_reason="token fetcher raised",
                    err_desc=describe_exception(exc),
                )
            )

        if self._generation != generation:
            return self._aborted()
        session = self._new_session()
        session.login(answer, now=loop.time())
        for event in session.events_received():
            # The core checked the answer (6.1 step 5) and refused it: no connection needed.
            self._streams.events.publish(event)
            if isinstance(event, StatusChange) and not event.online:
                return self.publish_status(event)

        conn = Connection(session, loop.create_future(), generation)
        on_events = self._on_events
        transport: TransportLike = self._transport_factory(
            session, self.url, lambda events: on_events(conn, events), self.transport_options
        )
        try:
            await transport.open()
        except ConnectionClosed as exc:
            return self.publish_status(
                StatusChange(
                    online=False,
                    err_type="connect failed",
                    err_reason=DisconnectReason.CONNECT_FAILED.value,
                    err_desc=exc.reason,
                )
            )
        if self._generation != generation:
            await transport.close(self.transport_options.close_timeout)
            return self._aborted()
        conn.transport = transport
        self.conn = conn
        conn.supervisor = loop.create_task(self._supervise(conn), name="mimc-rx supervisor")
        try:
            return await asyncio.wait_for(asyncio.shield(conn.login_waiter), self.login_timeout)
        except asyncio.CancelledError:
            # Nobody will use this connection: close it now rather than let it BIND later.
            if conn.end is None:
                conn.end = (DisconnectReason.LOGIN_FAILED, "login cancelled")
            self._generation += 1
            self._spawn(
                transport.close(self.transport_options.close_timeout), "mimc-rx cancelled login"
            )
            raise
        except TimeoutError:
            conn.end = (DisconnectReason.LOGIN_FAILED, "login timed out")
            await transport.close(self.transport_options.close_timeout)
            status = StatusChange(
                online=False,
                err_type="login timeout",
                err_reason="no BIND result",
                err_desc=f"no answer within {self.login_timeout:g} s",
            )
            return self.publish_status(status)

    def _aborted(self) -> StatusChange:
        return self.publish_status(
            StatusChange(
                online=False,
                err_type="login aborted",
                err_reason="logout during login",
                err_desc="logout() or close() was called while the login was in flight",
            )
        )

    # ------------------------------------------------------------------ events that decide a fate

    def on_status(self, conn: Connection, status: StatusChange) -> None:
        """A BIND result from the core: publish it and resolve the login waiter."""
        if not self._is_current(conn, "a BIND result"):
            if not conn.login_waiter.done():
                conn.login_waiter.set_result(status)
            return
        if status.online:
            conn.bound = True
            self.uuid = conn.session.uuid
            self.token = conn.session.token
        elif conn.end is None and not conn.bound:
            # BIND refused (6.4). The web SDK keeps the socket open; nothing more can happen
            # on it, so we close it.
            conn.end = (
                DisconnectReason.LOGIN_FAILED,
                "/".join(p for p in (status.err_type, status.err_reason) if p),
            )
            if conn.transport is not None and self.loop is not None:
                self._spawn(
                    conn.transport.close(self.transport_options.close_timeout),
                    "mimc-rx close refused",
                )
        self._streams.status.publish(status)
        if not conn.login_waiter.done():
            conn.login_waiter.set_result(status)

    def on_kicked(self, conn: Connection, event: Kicked) -> None:
        """KICK (6.14): the connection ends as ``KICKED`` and will not reconnect."""
        if not self._is_current(conn, "a KICK"):
            return
        detail = "/".join(p for p in (event.err_type, event.err_reason) if p)
        if event.err_desc:
            detail = f"{detail}: {event.err_desc}" if detail else event.err_desc
        conn.end = (DisconnectReason.KICKED, detail)

    def on_protocol_failure(self, conn: Connection, event: ProtocolFailure) -> None:
        """The server sent bytes we cannot accept; the core asked to close."""
        log.warning("protocol failure from server: %s %s", event.reason, event.detail)
        if conn.end is None:
            conn.end = (
                DisconnectReason.PROTOCOL_FAILURE,
                f"{event.reason}: {event.detail}" if event.detail else event.reason,
            )

    # ------------------------------------------------------------------ supervision

    async def _supervise(self, conn: Connection) -> None:
        """Wait for a connection to end, report it, and start reconnecting when it should."""
        assert conn.transport is not None
        info = await conn.transport.wait_closed()
        if conn.end is None:
            conn.end = (info.reason, info.detail)
        reason, detail = conn.end
        if not self._is_current(conn, f"the end ({reason.value})"):
            # A newer connection replaced this one: its fate must not touch the newer one.
            if not conn.login_waiter.done():
                conn.login_waiter.set_result(OFFLINE)
            return
        stale = conn.generation != self._generation  # logged out or cancelled since
        was_bound = conn.bound
        if not conn.login_waiter.done() or was_bound:
            offline = StatusChange(
                online=False, err_type="disconnected", err_reason=reason.value, err_desc=detail
            )
            self.publish_status(offline)
            if not conn.login_waiter.done():
                conn.login_waiter.set_result(offline)
        terminal = reason in (DisconnectReason.LOGOUT, DisconnectReason.KICKED)
        if terminal and not stale:
            self._want_online = False
        reconnector = self._get_reconnector()
        will_reconnect = False
        if self._want_online and not terminal and not stale and self.policy.enabled:
            if was_bound:
                will_reconnect = True
            elif reconnector.active:  # a reconnect attempt that failed after opening
                will_reconnect = not self.policy.gives_up_after(reconnector.attempt)
        self._streams.disconnects.publish(
            Disconnected(
                reason=reason, detail=detail, code=info.code, will_reconnect=will_reconnect
            )
        )
        if was_bound and will_reconnect:
            reconnector.connection_lost()

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
            self._on_reconnected()
        elif not self._want_online:
            reconnector.cancel()
        elif not reconnector.attempt_failed():
            self._want_online = False
            self.publish_status(
                StatusChange(
                    online=False,
                    err_type="reconnect failed",
                    err_reason=f"gave up after {attempt} attempts",
                    err_desc=status.err_desc or status.err_reason,
                )
            )
