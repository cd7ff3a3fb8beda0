"""``MIMCUser``: the reactive facade over one MIMC account.

Theory of operation. The official web SDK reports everything through registered callbacks
(PROTOCOL.md 9.3). Here every callback is an ``Observable`` property (``status``,
``p2p_messages``, ...), fed by one dispatcher that receives the protocol core's events from the
transport and republishes them. The facade knows no bytes.

One *connection* is: fetch a token, create a ``ClientSession``, ``login`` it, open a
``WebSocketTransport``, wait for the BIND result. A supervisor task waits for the connection to
end, publishes ``Disconnected`` (and an offline ``StatusChange`` when we had been online), and
hands unexpected losses to the ``Reconnector``, which schedules new connections with backoff on
the injected scheduler. Each attempt fetches a fresh token. Delivered P2P/P2T sequences go
through a ``SequenceWindow`` owned by the user object, so a message the server re-delivers
after a reconnect is emitted exactly once.

Everything runs on the asyncio loop that called ``login()``: emissions, timers (an
``AsyncIOScheduler`` on that loop unless a scheduler is injected), and commands. Library code
never starts or blocks a loop, so this works inside Jupyter's running loop; ``mimc_rx.sync``
wraps it for plain scripts.
"""

from __future__ import annotations

import asyncio
import functools
import html
import inspect
import logging
import random
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .errors import ConnectionClosed, LoginError, NotLoggedIn, SendTimeout, TokenError
from .http import (
    PRODUCTION_WS_URL,
    TokenAnswer,
    TokenFetcher,
    TopicClient,
    UCTopicClient,
    http_base_from_ws_url,
)
from .payload import P2P_LIMIT, UC_LIMIT, SequenceWindow, encode_payload
from .protocol.events import (
    BadPacket,
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    PacketId,
    ProtocolFailure,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from .reconnect import Backoff, Reconnector
from .streams import Disconnected, DisconnectReason, Reconnecting, StreamHub
from .transport import CloseInfo, TransportOptions, WebSocketTransport

__all__ = ["DEFAULT_ACK_TIMEOUT", "MIMCUser", "SessionFactory", "TransportFactory"]

log = logging.getLogger("mimc_rx.user")

DEFAULT_ACK_TIMEOUT = 10.0
"""Seconds ``ack()`` waits for the server's PACKET_ACK by default."""

OFFLINE = StatusChange(online=False)


class _Session(Protocol):
    """What the facade needs from ``mimc_rx.protocol.ClientSession`` (docs/sansio.md)."""

    def receive_data(self, data: bytes, now: float) -> None: ...
    def receive_eof(self) -> None: ...
    def expire(self, now: float) -> None: ...
    def events_received(self) -> list[Any]: ...
    def data_to_send(self) -> list[bytes]: ...
    def next_deadline(self) -> float | None: ...
    @property
    def close_requested(self) -> bool: ...
    @property
    def is_logged_in(self) -> bool: ...
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


class _Transport(Protocol):
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


def _default_session_factory(
    app_id: int, app_account: str, resource: str, *, ack_pull_notifications: bool = True
) -> Any:
    from .protocol.client import ClientSession

    return ClientSession(
        app_id, app_account, resource, ack_pull_notifications=ack_pull_notifications
    )


def _default_transport_factory(
    session: Any,
    url: str,
    on_events: Callable[[Sequence[ClientEvent]], None],
    options: TransportOptions,
) -> Any:
    return WebSocketTransport(session, url, on_events, options=options)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Connection:
    """One attempt's session, transport and fate (so an old connection never mixes with a new)."""

    __slots__ = ("bound", "end", "login_waiter", "session", "supervisor", "transport")

    def __init__(self, session: _Session, login_waiter: asyncio.Future[StatusChange]) -> None:
        self.session = session
        self.transport: _Transport | None = None
        self.login_waiter = login_waiter
        self.bound = False
        self.end: tuple[DisconnectReason, str] | None = None
        self.supervisor: asyncio.Task[None] | None = None


class MIMCUser:
    """One MIMC account, online through one websocket, with every event as an Observable.

    Args:
        app_account: the account name within the app.
        app_id: the app id, as a decimal string or an int.
        token_fetcher: a sync or async callable returning the token service's answer (a dict,
            or the JSON as str or bytes; PROTOCOL.md 8.1). Called on every login attempt; a
            sync one runs in a worker thread so it may block. ``mimc_rx.http`` has ready ones.
        url: the websocket URL; production by default.
        resource: names this client instance of the account (PROTOCOL.md 6.14). A second
            login with the same resource kicks this one. Default: random per ``MIMCUser``.
        reconnect: a ``Backoff`` policy, True for the default one, or False for none.
        scheduler: where timers run (ack timeouts, backoff). Default: an ``AsyncIOScheduler``
            on the loop that calls ``login()``. Inject a ``TestScheduler`` for virtual time.
        login_timeout: seconds a login attempt may take, token fetch included.
        transport_options: websocket settings (keep-alive pings, timeouts).
        api_url: the HTTP base for unlimited-group REST calls; derived from ``url`` by default.
        http_client: an ``httpx.AsyncClient`` to reuse for REST calls.
        auto_pull: answer a pull notification (6.10) with ``pull()`` at once, so a large
            offline backlog still arrives by itself; False leaves it to the application.
        dedup_window: how many delivered sequences are remembered to drop duplicates.
        ack_cache_size: how many server acks are kept for ``ack()`` calls made after the ack.
        session_factory: builds the protocol core; inject to tune or fake it.
        transport_factory: builds the transport; inject an in-memory one in tests.
        rng: the jitter source of the backoff.
    """

    def __init__(
        self,
        app_account: str,
        *,
        app_id: int | str,
        token_fetcher: TokenFetcher,
        url: str = PRODUCTION_WS_URL,
        resource: str | None = None,
        reconnect: Backoff | bool = True,
        scheduler: abc.SchedulerBase | None = None,
        login_timeout: float = 15.0,
        transport_options: TransportOptions | None = None,
        api_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        auto_pull: bool = True,
        dedup_window: int = 65536,
        ack_cache_size: int = 16384,
        session_factory: SessionFactory | None = None,
        transport_factory: TransportFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not app_account:
            raise ValueError("app_account must not be empty")
        self._app_account = app_account
        self._app_id = int(app_id)
        self._fetch = token_fetcher
        self.url = url
        self._resource = resource or f"mimcrx_{secrets.token_hex(5)}"
        if isinstance(reconnect, bool):
            reconnect = Backoff() if reconnect else Backoff.disabled()
        self.reconnect_policy = reconnect
        self._scheduler = scheduler
        self.login_timeout = login_timeout
        self.transport_options = transport_options or TransportOptions()
        self.api_url = api_url or http_base_from_ws_url(url)
        self._http_client = http_client
        self.auto_pull = auto_pull
        # With auto_pull the range is not acked on notice: PULL would find nothing pending.
        self._session_factory = session_factory or functools.partial(
            _default_session_factory, ack_pull_notifications=not auto_pull
        )
        self._transport_factory = transport_factory or _default_transport_factory
        self._rng = rng

        self._seen = SequenceWindow(dedup_window)
        self._acks: OrderedDict[str, ServerAck] = OrderedDict()
        self._ack_cache_size = ack_cache_size
        self._ack_waiters: dict[str, list[Callable[[ServerAck], None]]] = {}
        self._uc_topics: set[int] = set()
        self._pull_target: int | None = None

        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._want_online = False
        self._reconnector: Reconnector | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._uuid: int | None = None
        self._token: str | None = None
        self.counts: dict[str, int] = {"sent": 0, "acked": 0, "received": 0, "duplicates": 0}

        self._status: StreamHub[StatusChange] = StreamHub("status", initial=OFFLINE, replay=True)
        self._events: StreamHub[ClientEvent] = StreamHub("events")
        self._server_acks: StreamHub[ServerAck] = StreamHub("server_acks")
        self._p2p: StreamHub[P2PMessage] = StreamHub("p2p_messages")
        self._p2t: StreamHub[P2TMessage] = StreamHub("group_messages")
        self._uc: StreamHub[UCMessage] = StreamHub("uc_messages")
        self._uc_joins: StreamHub[UCJoinResult] = StreamHub("uc_join_results")
        self._uc_quits: StreamHub[UCQuitResult] = StreamHub("uc_quit_results")
        self._uc_dismissals: StreamHub[UCDismissed] = StreamHub("uc_dismissals")
        self._pulls: StreamHub[PullNotification] = StreamHub("pull_notifications")
        self._disconnects: StreamHub[Disconnected] = StreamHub("disconnects")
        self._reconnects: StreamHub[Reconnecting] = StreamHub("reconnects")

    # ------------------------------------------------------------------ streams

    @property
    def status(self) -> Observable[StatusChange]:
        """Login state changes; replays the latest one to a new subscriber."""
        return self._status.observable

    @property
    def server_acks(self) -> Observable[ServerAck]:
        """Every PACKET_ACK for a P2P or P2T message we sent."""
        return self._server_acks.observable

    @property
    def p2p_messages(self) -> Observable[P2PMessage]:
        """One-to-one messages delivered to us, each exactly once."""
        return self._p2p.observable

    @property
    def group_messages(self) -> Observable[P2TMessage]:
        """Group (topic) messages delivered to us, each exactly once."""
        return self._p2t.observable

    @property
    def uc_messages(self) -> Observable[UCMessage]:
        """Messages of the unlimited groups we joined."""
        return self._uc.observable

    @property
    def uc_join_results(self) -> Observable[UCJoinResult]:
        """Answers to ``join_unlimited_group``."""
        return self._uc_joins.observable

    @property
    def uc_quit_results(self) -> Observable[UCQuitResult]:
        """Answers to ``quit_unlimited_group``."""
        return self._uc_quits.observable

    @property
    def uc_dismissals(self) -> Observable[UCDismissed]:
        """Unlimited groups we were in that their owner dismissed."""
        return self._uc_dismissals.observable

    @property
    def pull_notifications(self) -> Observable[PullNotification]:
        """The server holds more offline messages than it pushed (PROTOCOL.md 6.10)."""
        return self._pulls.observable

    @property
    def disconnects(self) -> Observable[Disconnected]:
        """Every end of a websocket connection, with the reason."""
        return self._disconnects.observable

    @property
    def reconnects(self) -> Observable[Reconnecting]:
        """Each reconnect attempt scheduled by the backoff policy."""
        return self._reconnects.observable

    @property
    def events(self) -> Observable[ClientEvent]:
        """Every event of the protocol core, unfiltered (``BadPacket`` and ``Kicked`` included)."""
        return self._events.observable

    # ------------------------------------------------------------------ accessors

    @property
    def app_account(self) -> str:
        """The account name."""
        return self._app_account

    @property
    def app_id(self) -> int:
        """The app id."""
        return self._app_id

    @property
    def resource(self) -> str:
        """This client instance's resource."""
        return self._resource

    @property
    def uuid(self) -> int | None:
        """The MIMC user id from the last token answer; None before the first login."""
        return self._uuid

    @property
    def token(self) -> str | None:
        """The token of the last login; None before the first login."""
        return self._token

    @property
    def is_connected(self) -> bool:
        """True while a websocket is open (unlike the web SDK, reset on close, 10.13)."""
        conn = self._conn
        return conn is not None and conn.transport is not None and conn.transport.is_open

    @property
    def is_logged_in(self) -> bool:
        """True while bound (BIND succeeded and the connection is up)."""
        conn = self._conn
        return conn is not None and conn.bound and conn.end is None

    @property
    def current_status(self) -> StatusChange:
        """The latest ``StatusChange`` (what ``status`` replays)."""
        return self._status.latest or OFFLINE

    # ------------------------------------------------------------------ login / logout

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._lock = asyncio.Lock()
        elif self._loop is not loop:
            raise RuntimeError("a MIMCUser is bound to the event loop of its first login()")
        return loop

    def _get_scheduler(self) -> abc.SchedulerBase:
        if self._scheduler is None:
            loop = self._loop or asyncio.get_running_loop()
            self._scheduler = AsyncIOScheduler(loop)
        return self._scheduler

    def _get_reconnector(self) -> Reconnector:
        if self._reconnector is None:
            self._reconnector = Reconnector(
                self.reconnect_policy,
                self._reconnect_due,
                scheduler=self._get_scheduler(),
                on_scheduled=self._reconnects.publish,
                rng=self._rng,
            )
        return self._reconnector

    async def login(self) -> StatusChange:
        """Connect and log in; resolves with the ``StatusChange`` of the BIND result.

        Never raises for a refused login, a bad token answer or an unreachable server: the
        returned (and published) ``StatusChange`` has ``online=False`` and says why. Cancels
        any scheduled reconnect; returns the current status at once when already logged in.
        """
        self._ensure_loop()
        assert self._lock is not None
        self._want_online = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        async with self._lock:
            if self.is_logged_in:
                return self.current_status
            status = await self._connect_once()
        if not status.online:
            self._want_online = False
        return status

    async def logout(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Log out (UBND), wait for the server to close, and stop reconnecting.

        Safe to call when offline. ``disconnects`` reports ``DisconnectReason.LOGOUT``.
        """
        self._want_online = False
        if self._reconnector is not None:
            self._reconnector.cancel()
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()
        conn = self._conn
        if conn is None or conn.transport is None:
            return
        if conn.end is None:
            conn.end = (DisconnectReason.LOGOUT, "")
        transport = conn.transport
        if conn.bound and transport.is_open:
            loop = self._ensure_loop()
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

    async def close(self) -> None:
        """Log out if needed and end every stream (the object is not used again)."""
        await self.logout()
        for hub in self._hubs():
            hub.complete()

    async def __aenter__(self) -> Self:
        status = await self.login()
        if not status.online:
            raise LoginError(status.err_type, status.err_reason, status.err_desc)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.logout()

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

    def _publish_status(self, status: StatusChange) -> StatusChange:
        self._status.publish(status)
        return status

    async def _connect_once(self) -> StatusChange:
        """One full attempt: token, session, websocket, BIND. Returns the outcome."""
        loop = self._ensure_loop()
        try:
            answer = await asyncio.wait_for(self._fetch_token(), self.login_timeout)
        except TokenError as exc:
            return self._publish_status(
                StatusChange(
                    online=False,
                    err_type=exc.err_type,
                    err_reason=exc.err_reason,
                    err_desc=exc.err_desc,
                )
            )
        except Exception as exc:
            log.warning("token fetcher failed: %s", _describe(exc))
            return self._publish_status(
                StatusChange(
                    online=False,
                    err_type="get token failed",
                    err_reason="token fetcher raised",
                    err_desc=_describe(exc),
                )
            )

        session: _Session = self._session_factory(self._app_id, self._app_account, self._resource)
        session.login(answer, now=loop.time())
        for event in session.events_received():
            # The core checked the answer (6.1 step 5) and refused it: no connection needed.
            self._events.publish(event)
            if isinstance(event, StatusChange) and not event.online:
                return self._publish_status(event)

        conn = _Connection(session, loop.create_future())
        transport: _Transport = self._transport_factory(
            session, self.url, lambda events: self._dispatch(conn, events), self.transport_options
        )
        try:
            await transport.open()
        except ConnectionClosed as exc:
            return self._publish_status(
                StatusChange(
                    online=False,
                    err_type="connect failed",
                    err_reason=DisconnectReason.CONNECT_FAILED.value,
                    err_desc=exc.reason,
                )
            )
        conn.transport = transport
        self._conn = conn
        conn.supervisor = loop.create_task(self._supervise(conn), name="mimc-rx supervisor")
        try:
            return await asyncio.wait_for(asyncio.shield(conn.login_waiter), self.login_timeout)
        except TimeoutError:
            conn.end = (DisconnectReason.LOGIN_FAILED, "login timed out")
            await transport.close(self.transport_options.close_timeout)
            status = StatusChange(
                online=False,
                err_type="login timeout",
                err_reason="no BIND result",
                err_desc=f"no answer within {self.login_timeout:g} s",
            )
            return self._publish_status(status)

    async def _supervise(self, conn: _Connection) -> None:
        """Wait for a connection to end, report it, and start reconnecting when it should."""
        assert conn.transport is not None
        info = await conn.transport.wait_closed()
        reason, detail = conn.end or (info.reason, info.detail)
        if conn.end is None:
            conn.end = (reason, detail)
        was_bound = conn.bound
        if not conn.login_waiter.done():
            conn.login_waiter.set_result(
                self._publish_status(
                    StatusChange(
                        online=False,
                        err_type="disconnected",
                        err_reason=reason.value,
                        err_desc=detail,
                    )
                )
            )
        elif was_bound:
            self._publish_status(
                StatusChange(
                    online=False, err_type="disconnected", err_reason=reason.value, err_desc=detail
                )
            )
        terminal = reason in (DisconnectReason.LOGOUT, DisconnectReason.KICKED)
        if terminal:
            self._want_online = False
        reconnector = self._get_reconnector()
        will_reconnect = False
        if self._want_online and not terminal and self.reconnect_policy.enabled:
            if was_bound:
                will_reconnect = True
            elif reconnector.active:  # a reconnect attempt that failed after opening
                will_reconnect = not self.reconnect_policy.gives_up_after(reconnector.attempt)
        self._disconnects.publish(
            Disconnected(
                reason=reason, detail=detail, code=info.code, will_reconnect=will_reconnect
            )
        )
        if was_bound and will_reconnect:
            reconnector.connection_lost()

    def _reconnect_due(self, attempt: int) -> None:
        loop = self._loop
        if loop is None or not self._want_online:
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
            log.info("reconnect attempt %d for %s", attempt, self._app_account)
            status = await self._connect_once()
        if status.online:
            reconnector.attempt_succeeded()
            self._rejoin_uc_topics()
        elif not self._want_online:
            reconnector.cancel()
        elif not reconnector.attempt_failed():
            self._want_online = False
            self._publish_status(
                StatusChange(
                    online=False,
                    err_type="reconnect failed",
                    err_reason=f"gave up after {attempt} attempts",
                    err_desc=status.err_desc or status.err_reason,
                )
            )

    def _rejoin_uc_topics(self) -> None:
        # A fresh session knows no unlimited groups; rejoin the ones we were in.
        for topic_id in sorted(self._uc_topics):
            try:
                self.join_unlimited_group(topic_id)
            except NotLoggedIn:
                return

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, conn: _Connection, events: Sequence[ClientEvent]) -> None:
        """Republish a batch of core events (called by the transport, on the loop)."""
        target = self._pull_target
        pulled: int | None = None  # the highest delivered sequence within the pull range
        for event in events:
            self._events.publish(event)
            match event:
                case P2PMessage():
                    if target is not None and event.sequence <= target:
                        pulled = max(pulled or 0, event.sequence)
                    if self._seen.add(event.sequence):
                        self.counts["received"] += 1
                        self._p2p.publish(event)
                    else:
                        self.counts["duplicates"] += 1
                case P2TMessage():
                    if target is not None and event.sequence <= target:
                        pulled = max(pulled or 0, event.sequence)
                    if self._seen.add(event.sequence):
                        self.counts["received"] += 1
                        self._p2t.publish(event)
                    else:
                        self.counts["duplicates"] += 1
                case ServerAck():
                    self._on_ack(event)
                case StatusChange():
                    self._on_status(conn, event)
                case UCMessage():
                    self._uc.publish(event)
                case UCJoinResult():
                    if event.ok:
                        self._uc_topics.add(event.topic_id)
                    self._uc_joins.publish(event)
                case UCQuitResult():
                    if event.ok:
                        self._uc_topics.discard(event.topic_id)
                    self._uc_quits.publish(event)
                case UCDismissed():
                    self._uc_topics.discard(event.topic_id)
                    self._uc_dismissals.publish(event)
                case PullNotification():
                    self._pulls.publish(event)
                    if self.auto_pull:
                        self._pull_target = event.max_sequence
                        self._auto_pull(conn)
                case Kicked():
                    detail = "/".join(p for p in (event.err_type, event.err_reason) if p)
                    if event.err_desc:
                        detail = f"{detail}: {event.err_desc}" if detail else event.err_desc
                    conn.end = (DisconnectReason.KICKED, detail)
                case ProtocolFailure():
                    log.warning("protocol failure from server: %s %s", event.reason, event.detail)
                    if conn.end is None:
                        conn.end = (
                            DisconnectReason.PROTOCOL_FAILURE,
                            f"{event.reason}: {event.detail}" if event.detail else event.reason,
                        )
                case BadPacket():
                    log.warning("bad packet from server: %s %s", event.reason, event.detail)
        if pulled is not None and target is not None and self._pull_target == target:
            # A pulled batch arrived: pull again until the notified range is covered (a PULL
            # answers at most the server's page size). An empty answer ends it too.
            if pulled >= target:
                self._pull_target = None
            else:
                self._auto_pull(conn)

    def _auto_pull(self, conn: _Connection) -> None:
        if conn.bound and conn.end is None and conn.transport is not None and self._loop:
            conn.session.pull(now=self._loop.time())
            conn.transport.wake()
        else:
            self._pull_target = None

    def _on_status(self, conn: _Connection, status: StatusChange) -> None:
        if status.online:
            conn.bound = True
            self._uuid = conn.session.uuid
            self._token = conn.session.token
        elif conn.end is None and not conn.bound:
            # BIND refused (6.4). The web SDK keeps the socket open; nothing more can happen
            # on it, so we close it.
            conn.end = (
                DisconnectReason.LOGIN_FAILED,
                "/".join(p for p in (status.err_type, status.err_reason) if p),
            )
            if conn.transport is not None and self._loop is not None:
                self._loop.create_task(conn.transport.close(self.transport_options.close_timeout))
        self._status.publish(status)
        if not conn.login_waiter.done():
            conn.login_waiter.set_result(status)

    def _on_ack(self, ack: ServerAck) -> None:
        self.counts["acked"] += 1
        acks = self._acks
        acks[ack.packet_id] = ack
        if len(acks) > self._ack_cache_size:
            acks.popitem(last=False)
        waiters = self._ack_waiters.pop(ack.packet_id, None)
        if waiters:
            for waiter in waiters:
                try:
                    waiter(ack)
                except Exception:
                    log.exception("an ack waiter raised")
        self._server_acks.publish(ack)

    def _hubs(self) -> list[StreamHub[Any]]:
        return [
            self._status,
            self._events,
            self._server_acks,
            self._p2p,
            self._p2t,
            self._uc,
            self._uc_joins,
            self._uc_quits,
            self._uc_dismissals,
            self._pulls,
            self._disconnects,
            self._reconnects,
        ]

    # ------------------------------------------------------------------ commands

    def _bound(self, action: str) -> tuple[_Session, _Transport, float]:
        conn = self._conn
        if conn is None or not conn.bound or conn.end is not None or conn.transport is None:
            raise NotLoggedIn(action)
        assert self._loop is not None
        return conn.session, conn.transport, self._loop.time()

    def send_message(
        self,
        to_account: str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """Send a one-to-one message; returns its packet id at once (PROTOCOL.md 6.6).

        The server's ack arrives on ``server_acks``; ``await user.ack(pid)`` waits for it.

        Raises:
            NotLoggedIn: not logged in (nothing is queued).
            PayloadTooLarge: over 15360 UTF-16 code units (or 46080 bytes); nothing sent.
        """
        data = encode_payload(payload, P2P_LIMIT)
        session, transport, now = self._bound("send a message")
        pid = session.send_p2p(to_account, data, is_store=is_store, biz_type=biz_type, now=now)
        self.counts["sent"] += 1
        transport.wake()
        return pid

    def send_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """Send a message to a normal group (topic); returns its packet id at once (6.7)."""
        data = encode_payload(payload, P2P_LIMIT)
        session, transport, now = self._bound("send a group message")
        pid = session.send_p2t(int(topic_id), data, is_store=is_store, biz_type=biz_type, now=now)
        self.counts["sent"] += 1
        transport.wake()
        return pid

    def send_unlimited_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = False,
        biz_type: str = "",
    ) -> PacketId:
        """Send to an unlimited group; returns the UC packet id (not what receivers see, 10.9)."""
        data = encode_payload(payload, UC_LIMIT)
        session, transport, now = self._bound("send an unlimited-group message")
        pid = session.send_uc(int(topic_id), data, is_store=is_store, biz_type=biz_type, now=now)
        transport.wake()
        return pid

    def join_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to join an unlimited group; the answer comes on ``uc_join_results``."""
        session, transport, now = self._bound("join an unlimited group")
        pid = session.join_uc(int(topic_id), now=now)
        transport.wake()
        return pid

    def quit_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to leave an unlimited group; the answer comes on ``uc_quit_results``."""
        session, transport, now = self._bound("quit an unlimited group")
        pid = session.quit_uc(int(topic_id), now=now)
        self._uc_topics.discard(int(topic_id))
        transport.wake()
        return pid

    def pull(self) -> PacketId:
        """Ask the server for pending messages (PULL, 6.11); they arrive on the message streams."""
        session, transport, now = self._bound("pull")
        pid = session.pull(now=now)
        transport.wake()
        return pid

    # ------------------------------------------------------------------ acks

    def ack_observable(
        self,
        packet_id: str,
        timeout: float | None = DEFAULT_ACK_TIMEOUT,
        *,
        scheduler: abc.SchedulerBase | None = None,
    ) -> Observable[ServerAck]:
        """An Observable that emits the ``ServerAck`` of ``packet_id`` and completes.

        It fails with ``SendTimeout`` when no ack arrives within ``timeout`` seconds of the
        subscription (timed on ``scheduler``, the user's scheduler by default). An ack that
        arrived before the subscription is replayed from a bounded cache.
        """

        def subscribe(
            observer: abc.ObserverBase[ServerAck], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            cached = self._acks.get(packet_id)
            if cached is not None:
                observer.on_next(cached)
                observer.on_completed()
                return Disposable()
            done = False
            timer: abc.DisposableBase | None = None

            def forget() -> None:
                waiters = self._ack_waiters.get(packet_id)
                if waiters is not None and on_ack in waiters:
                    waiters.remove(on_ack)
                    if not waiters:
                        del self._ack_waiters[packet_id]

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

            def dispose() -> None:
                nonlocal done
                done = True
                if timer is not None:
                    timer.dispose()
                forget()

            self._ack_waiters.setdefault(packet_id, []).append(on_ack)
            if timeout is not None:
                sched = scheduler or sub_scheduler or self._get_scheduler()
                timer = sched.schedule_relative(timeout, on_timeout)
            return Disposable(dispose)

        return reactivex.create(subscribe)

    async def ack(self, packet_id: str, timeout: float | None = DEFAULT_ACK_TIMEOUT) -> ServerAck:  # noqa: ASYNC109
        """Wait for the server's ack of a packet we sent.

        Returns the ``ServerAck`` (check ``ack.ok``: the server may refuse with ``err_msg``).

        Raises:
            SendTimeout: no ack within ``timeout`` seconds.
        """
        self._ensure_loop()
        future: asyncio.Future[ServerAck] = asyncio.get_running_loop().create_future()

        def on_next(ack: ServerAck) -> None:
            if not future.done():
                future.set_result(ack)

        def on_error(error: Exception) -> None:
            if not future.done():
                future.set_exception(error)

        subscription = self.ack_observable(packet_id, timeout).subscribe(on_next, on_error)
        try:
            return await future
        finally:
            subscription.dispose()

    # ------------------------------------------------------------------ REST (groups)

    async def create_group(self, topic_name: str, accounts: Sequence[str] = ()) -> int:
        """Create a normal group (8.3) owned by this user with ``accounts`` in it; its id."""
        api = TopicClient(self.api_url, self._app_id, lambda: self._token, client=self._http_client)
        return await api.create(topic_name, tuple(accounts))

    async def dismiss_group(self, topic_id: int | str) -> None:
        """Dismiss a normal group this user owns."""
        api = TopicClient(self.api_url, self._app_id, lambda: self._token, client=self._http_client)
        await api.dismiss(int(topic_id))

    def topics_api(self) -> UCTopicClient:
        """The unlimited-group REST client for this user (uses the current token)."""
        return UCTopicClient(self.api_url, lambda: self._token, client=self._http_client)

    async def create_unlimited_group(self, topic_name: str, *, join: bool = True) -> int:
        """Create an unlimited group over REST (8.2); returns its id and, like the SDK, joins it."""
        topic_id = await self.topics_api().create(topic_name)
        if join and self.is_logged_in:
            self.join_unlimited_group(topic_id)
        return topic_id

    async def dismiss_unlimited_group(self, topic_id: int | str) -> None:
        """Dismiss an unlimited group we own; members get ``uc_dismissals``."""
        await self.topics_api().dismiss(int(topic_id))
        self._uc_topics.discard(int(topic_id))

    async def unlimited_groups(self) -> list[int]:
        """The unlimited groups this account has joined, as the server knows them."""
        return await self.topics_api().topics()

    # ------------------------------------------------------------------ display

    def _state_word(self) -> str:
        if self.is_logged_in:
            return "online"
        if self._reconnector is not None and self._reconnector.active:
            return f"reconnecting (attempt {self._reconnector.attempt})"
        if self.is_connected:
            return "connecting"
        return "offline"

    def __repr__(self) -> str:
        uuid = f" uuid={self._uuid}" if self._uuid is not None else ""
        return (
            f"<MIMCUser {self._app_account!r} app={self._app_id} {self._state_word()}"
            f"{uuid} resource={self._resource!r}>"
        )

    def _repr_html_(self) -> str:
        status = self.current_status
        rows = [
            ("account", self._app_account),
            ("app id", str(self._app_id)),
            ("state", self._state_word()),
            ("uuid", "" if self._uuid is None else str(self._uuid)),
            ("resource", self._resource),
            ("url", self.url),
            ("sent / acked", f"{self.counts['sent']} / {self.counts['acked']}"),
            ("received", str(self.counts["received"])),
        ]
        if not status.online and (status.err_type or status.err_reason):
            rows.append(("last error", f"{status.err_type} {status.err_reason} {status.err_desc}"))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>MIMCUser</caption>{body}</table>"
