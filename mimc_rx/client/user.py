"""``MIMCUser``: the reactive facade over one MIMC account.

Theory of operation. The official web SDK reports everything through registered callbacks
(docs/protocol.md 9.3). Here every callback is an ``Observable`` property (``status``,
``p2p_messages``, ...); the facade knows no bytes. It is assembled from a few parts, each in
its own module:

* ``ConnectionManager`` (``mimc_rx.client.lifecycle``): one ``SessionLink`` at a time, made by
  a ``Connector`` (token, session, transport) and bound; logout. Its ``Supervisor``
  (``mimc_rx.client.supervisor``) retries a first login, watches each link and reconnects with
  backoff.
* ``EventRouter`` (``mimc_rx.client.router``): republishes the core's events on the streams
  and records acks; it decides nothing.
* ``AckBook`` (``mimc_rx.client.acks``): the acks behind ``ack()`` and ``ack_observable()``.
* ``UserStreams`` (``mimc_rx.client.streams``): the subscriber-safe hubs behind the properties.
* ``SessionMemory`` (``mimc_rx.protocol.memory``): what the protocol core remembers across
  connections (the dedup window sized by ``dedup_window``, the joined unlimited groups); the
  user creates it once and every new ``ClientSession`` gets it.

This module holds what users call: the streams, the accessors, the sends (handed to the bound
session, which checks the payload, then the transport is woken), the acks and the group
helpers. Protocol rules (payload limits, dedup, unlimited groups, auto-pull) live in the core.

Everything runs on the asyncio loop that called ``login()``: emissions, timers (an
``AsyncIOScheduler`` on that loop unless a scheduler is injected), and commands. Library code
never starts or blocks a loop, so this works inside Jupyter's running loop; ``mimc_rx.sync``
wraps it for plain scripts.
"""

from __future__ import annotations

import functools
import html
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
from reactivex import Observable, abc

from mimc_rx.errors import ConnectionClosed, LoginError
from mimc_rx.protocol.events import (
    ClientEvent,
    P2PMessage,
    P2TMessage,
    PacketId,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from mimc_rx.protocol.memory import (
    DEFAULT_DEDUP_WINDOW,
    DEFAULT_OUTBOX_AGE,
    DEFAULT_OUTBOX_SIZE,
    SessionMemory,
)

from .acks import DEFAULT_ACK_TIMEOUT, AckBook
from .attempt import Connector, default_session_factory, default_transport_factory
from .http import PRODUCTION_WS_URL, TopicClient, UCTopicClient, http_base_from_ws_url
from .lifecycle import ConnectionManager
from .reconnect import Backoff
from .router import EventRouter
from .seams import SessionFactory, TokenFetcher, TransportFactory
from .streams import UserStreams, first_value
from .values import OFFLINE, Disconnected, Reconnecting, TransportOptions

__all__ = ["MIMCUser"]

log = logging.getLogger(__name__)

_told_about_default_url = False
"""True once a user without ``url=`` has logged which URL it connects to (said once a process)."""


def _default_url(app_account: str) -> str:
    """The production URL, said once: forgetting ``url=`` must not go unnoticed."""
    global _told_about_default_url
    if not _told_about_default_url:
        _told_about_default_url = True
        log.warning(
            "MIMCUser(%r) has no url=: it connects to the production MIMC cloud at %s "
            "(pass url=server.ws_url for a local server)",
            app_account,
            PRODUCTION_WS_URL,
        )
    return PRODUCTION_WS_URL


class MIMCUser:
    """One MIMC account, online through one websocket, with every event as an Observable.

    Args:
        app_account: the account name within the app.
        app_id: the app id, as a decimal string or an int.
        token_fetcher: a sync or async callable returning the token service's answer (a dict,
            or the JSON as str or bytes; docs/protocol.md 8.1). Called on every login attempt; a
            sync one runs in a worker thread so it may block. ``mimc_rx.http`` has ready ones.
        url: the websocket URL; the production cloud when omitted (logged once, so a
            forgotten ``url=`` is noticed).
        resource: names this client instance of the account (docs/protocol.md 6.14). A second
            login with the same resource kicks this one. Default: random per ``MIMCUser``.
        reconnect: a ``Backoff`` policy, True for the default one, or False for none.
        scheduler: where timers run (ack timeouts, backoff). Default: an ``AsyncIOScheduler``
            on the loop that calls ``login()``. Inject a ``TestScheduler`` for virtual time.
        login_timeout: seconds the token fetch of an attempt may take, and again seconds the
            CONN/BIND exchange may take once the websocket is open (each step its own budget,
            so a slow token service does not eat the time of the handshake).
        login_retries: how many more attempts a first ``login()`` makes, with the
            ``reconnect`` backoff, after a transient failure (token fetch failed, server
            unreachable, no BIND result in time) before it returns the failure.
        transport_options: websocket settings (keep-alive pings, timeouts).
        api_url: the HTTP base for unlimited-group REST calls; derived from ``url`` by default.
        http_client: an ``httpx.AsyncClient`` to reuse for REST calls.
        auto_pull: answer a pull notification (6.10) with ``pull()`` at once, so a large
            offline backlog still arrives by itself; False leaves it to the application.
        dedup_window: how many delivered sequences the core remembers to drop redeliveries,
            across reconnects (the user's ``SessionMemory``).
        outbox_size: how many stored sends may wait for their server ack; one more raises
            ``OutboxFull``. Unacked stored sends are sent again after a reconnect, under the
            same packet id (the server acks a packet id it already stored once).
        outbox_age: seconds an unacked stored send keeps being sent again after reconnects;
            then it is given up (a ``SendExpired`` on ``events``).
        ack_cache_size: how many server acks are kept for ``ack()`` calls made after the ack.
        session_factory: builds the protocol core of each connection (a ``SessionFactory``);
            inject to tune or fake it.
        transport_factory: builds the transport of each connection (a ``TransportFactory``);
            inject an in-memory one in tests.
        rng: the jitter source of the backoff.
    """

    def __init__(
        self,
        app_account: str,
        *,
        app_id: int | str,
        token_fetcher: TokenFetcher,
        url: str | None = None,
        resource: str | None = None,
        reconnect: Backoff | bool = True,
        scheduler: abc.SchedulerBase | None = None,
        login_timeout: float = 15.0,
        login_retries: int = 3,
        transport_options: TransportOptions | None = None,
        api_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        auto_pull: bool = True,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        outbox_size: int = DEFAULT_OUTBOX_SIZE,
        outbox_age: float = DEFAULT_OUTBOX_AGE,
        ack_cache_size: int = 16384,
        session_factory: SessionFactory | None = None,
        transport_factory: TransportFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not app_account:
            raise ValueError("app_account must not be empty")
        self._app_account = app_account
        self._app_id = int(app_id)
        if url is None:
            url = _default_url(app_account)
        self._resource = resource or f"mimcrx_{secrets.token_hex(5)}"
        if isinstance(reconnect, bool):
            reconnect = Backoff() if reconnect else Backoff.disabled()
        self._api_url = api_url or http_base_from_ws_url(url)
        self._http_client = http_client
        self._auto_pull = auto_pull
        self._memory = SessionMemory(dedup_window, outbox_size=outbox_size, outbox_age=outbox_age)
        # Packet ids of our P2P and group sends (bounded like the ack cache), so that
        # ``ack()`` of an id we never sent fails at once instead of after its timeout.
        self._sent_ids: OrderedDict[str, None] = OrderedDict()
        self._sent_ids_size = ack_cache_size
        self._group_names: dict[int, str] = {}
        make_session = session_factory or default_session_factory
        connector = Connector(
            token_fetcher=token_fetcher,
            new_session=functools.partial(
                make_session,
                self._app_id,
                self._app_account,
                self._resource,
                memory=self._memory,
                auto_pull=auto_pull,
            ),
            transport_factory=transport_factory or default_transport_factory,
            url=url,
            transport_options=transport_options or TransportOptions(),
            login_timeout=login_timeout,
        )
        # Built in dependency order: the streams and acks, the router that feeds them, and
        # the lifecycle that hands the router each event of the current connection.
        self._streams = UserStreams()
        self._acks = AckBook(ack_cache_size, self._scheduler)
        self._router = EventRouter(self._streams, self._acks)
        self._lifecycle = ConnectionManager(
            connector=connector,
            policy=reconnect,
            scheduler=scheduler,
            rng=rng,
            streams=self._streams,
            publish=self._router.publish,
            name=app_account,
            login_retries=login_retries,
        )

    def _scheduler(self) -> abc.SchedulerBase:
        return self._lifecycle.scheduler()

    @property
    def counts(self) -> dict[str, int]:
        """Messages ``sent``, ``acked``, ``received`` (each once) and ``duplicates`` dropped.

        A snapshot: the duplicates are the redeliveries the core's dedup window refused.
        """
        return {**self._router.counts, "duplicates": self._memory.duplicates}

    # ------------------------------------------------------------------ streams

    @property
    def status(self) -> Observable[StatusChange]:
        """Login state changes; replays the latest one to a new subscriber."""
        return self._streams.status.observable

    @property
    def server_acks(self) -> Observable[ServerAck]:
        """Every PACKET_ACK for a P2P or P2T message we sent."""
        return self._streams.server_acks.observable

    @property
    def p2p_messages(self) -> Observable[P2PMessage]:
        """One-to-one messages delivered to us, each exactly once."""
        return self._streams.p2p_messages.observable

    @property
    def group_messages(self) -> Observable[P2TMessage]:
        """Group (topic) messages delivered to us, each exactly once."""
        return self._streams.group_messages.observable

    @property
    def uc_messages(self) -> Observable[UCMessage]:
        """Messages of the unlimited groups we joined."""
        return self._streams.uc_messages.observable

    @property
    def uc_join_results(self) -> Observable[UCJoinResult]:
        """Answers to ``join_unlimited_group``."""
        return self._streams.uc_join_results.observable

    @property
    def uc_quit_results(self) -> Observable[UCQuitResult]:
        """Answers to ``quit_unlimited_group``."""
        return self._streams.uc_quit_results.observable

    @property
    def uc_dismissals(self) -> Observable[UCDismissed]:
        """Unlimited groups we were in that their owner dismissed."""
        return self._streams.uc_dismissals.observable

    @property
    def pull_notifications(self) -> Observable[PullNotification]:
        """The server holds more offline messages than it pushed (docs/protocol.md 6.10)."""
        return self._streams.pull_notifications.observable

    @property
    def disconnects(self) -> Observable[Disconnected]:
        """Every end of a websocket connection, with the reason."""
        return self._streams.disconnects.observable

    @property
    def reconnects(self) -> Observable[Reconnecting]:
        """Each reconnect attempt scheduled by the backoff policy."""
        return self._streams.reconnects.observable

    @property
    def sent_messages(self) -> Observable[P2PMessage | P2TMessage]:
        """Our own P2P and group sends, as they leave (sequence 0: the server has not
        numbered them yet; the ack on ``server_acks`` carries the sequence). A view of the
        whole conversation (the chat panel) shows messages sent from code with it."""
        return self._streams.sent_messages.observable

    @property
    def events(self) -> Observable[ClientEvent]:
        """Every event of the protocol core, unfiltered (``BadPacket`` and ``Kicked`` included)."""
        return self._streams.events.observable

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
        return self._lifecycle.uuid

    @property
    def token(self) -> str | None:
        """The token of the last login; None before the first login."""
        return self._lifecycle.token

    @property
    def is_connected(self) -> bool:
        """True while a websocket is open (unlike the web SDK, reset on close, 10.13)."""
        return self._lifecycle.is_connected

    @property
    def is_logged_in(self) -> bool:
        """True while bound (BIND succeeded and the connection is up)."""
        return self._lifecycle.is_logged_in

    @property
    def current_status(self) -> StatusChange:
        """The latest ``StatusChange`` (what ``status`` replays)."""
        return self._streams.status.latest or OFFLINE

    @property
    def api_url(self) -> str:
        """The HTTP base of the REST calls (groups, unlimited groups)."""
        return self._api_url

    @property
    def url(self) -> str:
        """The websocket URL."""
        return self._lifecycle.connector.url

    @property
    def login_timeout(self) -> float:
        """Seconds the token fetch may take, and the CONN/BIND exchange after it."""
        return self._lifecycle.connector.login_timeout

    @property
    def transport_options(self) -> TransportOptions:
        """The websocket settings."""
        return self._lifecycle.connector.transport_options

    @property
    def reconnect_policy(self) -> Backoff:
        """The automatic reconnect policy (``Backoff.disabled()`` when off)."""
        return self._lifecycle.policy

    @property
    def auto_pull(self) -> bool:
        """Whether the core answers a pull notification with PULL by itself."""
        return self._auto_pull

    # ------------------------------------------------------------------ login / logout

    async def login(self) -> StatusChange:
        """Connect and log in; resolves with the ``StatusChange`` of the BIND result.

        Never raises for a refused login, a bad token answer or an unreachable server: the
        returned (and published) ``StatusChange`` has ``online=False`` and says why. Cancels
        any scheduled reconnect; returns the current status at once when already logged in.
        """
        return await self._lifecycle.login()

    async def logout(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Log out (UBND), wait for the server to close, and stop reconnecting.

        Safe to call when offline. ``disconnects`` reports ``DisconnectReason.LOGOUT``.
        """
        await self._lifecycle.logout(timeout)

    async def close(self) -> None:
        """Log out if needed and end every stream (the object is not used again)."""
        try:
            await self.logout()
        finally:
            self._acks.fail_all(ConnectionClosed("the user was closed"))
            self._streams.complete()

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

    # ------------------------------------------------------------------ commands

    def send_message(
        self,
        to_account: str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """Send a one-to-one message; returns its packet id at once (docs/protocol.md 6.6).

        The server's ack arrives on ``server_acks`` (once, whichever connection brings it);
        ``await user.ack(pid)`` waits for it. A stored message stays in the outbox until then:
        if the connection ends first, it is sent again after the reconnect under the same
        packet id, and the server stores it once. Do not send it again yourself. An unstored
        one (``is_store=False``) is sent at most once: lost if the connection ends.

        Raises:
            NotLoggedIn: not logged in (nothing is queued).
            PayloadTooLarge: over 15360 UTF-16 code units (or 46080 bytes); nothing sent.
            OutboxFull: a stored message while ``outbox_size`` sends wait for their ack.
        """
        session, transport, now = self._lifecycle.bound("send a message")
        pid = session.send_p2p(to_account, payload, is_store=is_store, biz_type=biz_type, now=now)
        self._router.counts["sent"] += 1
        self._remember_sent(pid)
        self._publish_sent(pid, payload, biz_type, is_store, to_account=to_account)
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
        session, transport, now = self._lifecycle.bound("send a group message")
        topic = int(topic_id)
        pid = session.send_p2t(topic, payload, is_store=is_store, biz_type=biz_type, now=now)
        self._router.counts["sent"] += 1
        self._remember_sent(pid)
        self._publish_sent(pid, payload, biz_type, is_store, topic_id=topic)
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
        session, transport, now = self._lifecycle.bound("send an unlimited-group message")
        topic = int(topic_id)
        pid = session.send_uc(topic, payload, is_store=is_store, biz_type=biz_type, now=now)
        transport.wake()
        return pid

    def join_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to join an unlimited group; the answer comes on ``uc_join_results``."""
        session, transport, now = self._lifecycle.bound("join an unlimited group")
        pid = session.join_uc(int(topic_id), now=now)
        transport.wake()
        return pid

    def quit_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to leave an unlimited group; the answer comes on ``uc_quit_results``."""
        session, transport, now = self._lifecycle.bound("quit an unlimited group")
        pid = session.quit_uc(int(topic_id), now=now)
        transport.wake()
        return pid

    def pull(self) -> PacketId:
        """Ask the server for pending messages (PULL, 6.11); they arrive on the message streams."""
        session, transport, now = self._lifecycle.bound("pull")
        pid = session.pull(now=now)
        transport.wake()
        return pid

    def _remember_sent(self, packet_id: str) -> None:
        sent = self._sent_ids
        sent[packet_id] = None
        if len(sent) > self._sent_ids_size:
            sent.popitem(last=False)

    def _publish_sent(
        self, pid: PacketId, payload: str | bytes, biz_type: str, is_store: bool, **target: Any
    ) -> None:
        """Tell ``sent_messages`` about a send, if anybody listens (built only then)."""
        hub = self._streams.sent_messages
        if not hub.observed:
            return
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        common: dict[str, Any] = {
            "packet_id": pid,
            "sequence": 0,
            "timestamp": int(time.time() * 1000),
            "from_account": self._app_account,
            "from_resource": self._resource,
            "payload": data,
            "biz_type": biz_type,
            "is_store": is_store,
        }
        if "topic_id" in target:
            hub.publish(P2TMessage(topic_id=target["topic_id"], **common))
        else:
            hub.publish(P2PMessage(to_account=target["to_account"], to_resource="", **common))

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
        return self._acks.observable(packet_id, timeout, scheduler)

    async def ack(self, packet_id: str, timeout: float | None = DEFAULT_ACK_TIMEOUT) -> ServerAck:  # noqa: ASYNC109
        """Wait for the server's ack of a packet we sent.

        Returns the ``ServerAck`` (check ``ack.ok``: the server may refuse with ``err_msg``).

        Raises:
            SendTimeout: no ack within ``timeout`` seconds (a disconnect meanwhile does not end
                the wait: the outbox sends a stored message again after the reconnect).
            LookupError: at once, when this user never sent ``packet_id`` (a typo, another
                user's id, or one older than the last ``ack_cache_size`` sends).
        """
        self._lifecycle.ensure_loop()
        if packet_id not in self._sent_ids:
            raise LookupError(
                f"{self._app_account} never sent a message with packet id {packet_id!r}: "
                "no ack will come (pass the id send_message() or send_group_message() returned)"
            )
        return await self._acks.wait(packet_id, timeout)

    async def next_message(
        self,
        *,
        from_account: str | None = None,
        topic_id: int | str | None = None,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> P2PMessage | P2TMessage:
        """The next message delivered to this user, awaited: ``await bob.next_message()``.

        Without ``topic_id``, the next one-to-one message (from ``from_account`` when given);
        with it, the next message of that group. Only messages arriving after the call count.

        Raises:
            TimeoutError: nothing matching arrived within ``timeout`` seconds.
        """
        self._lifecycle.ensure_loop()

        def sender_matches(message: P2PMessage | P2TMessage) -> bool:
            return from_account is None or message.from_account == from_account

        if topic_id is None:
            waiting: Awaitable[P2PMessage | P2TMessage] = first_value(
                self.p2p_messages, sender_matches, timeout
            )
        else:
            topic = int(topic_id)

            def in_topic(message: P2TMessage) -> bool:
                return message.topic_id == topic and sender_matches(message)

            group_wait = first_value(self.group_messages, in_topic, timeout)
            waiting = group_wait
        what = "message" if from_account is None else f"message from {from_account}"
        where = "" if topic_id is None else f" in group {topic_id}"
        try:
            return await waiting
        except TimeoutError:
            raise TimeoutError(
                f"no {what}{where} for {self._app_account} within {timeout:g} s"
            ) from None

    # ------------------------------------------------------------------ REST (groups)

    async def create_group(self, topic_name: str, accounts: Sequence[str] = ()) -> int:
        """Create a normal group (8.3) owned by this user with ``accounts`` in it; its id."""
        topic_id = await self._topic_client().create(topic_name, tuple(accounts))
        self._group_names[topic_id] = topic_name
        return topic_id

    @property
    def group_names(self) -> dict[int, str]:
        """Names of the groups this user created here, by topic id (views show them)."""
        return dict(self._group_names)

    async def dismiss_group(self, topic_id: int | str) -> None:
        """Dismiss a normal group this user owns."""
        await self._topic_client().dismiss(int(topic_id))

    def topics_api(self) -> UCTopicClient:
        """The unlimited-group REST client for this user (uses the current token)."""
        return UCTopicClient(self.api_url, lambda: self._lifecycle.token, client=self._http_client)

    def _topic_client(self) -> TopicClient:
        """The normal-group REST client for this user (uses the current token)."""
        return TopicClient(
            self.api_url, self._app_id, lambda: self._lifecycle.token, client=self._http_client
        )

    async def create_unlimited_group(self, topic_name: str, *, join: bool = True) -> int:
        """Create an unlimited group over REST (8.2); returns its id and, like the SDK, joins it."""
        topic_id = await self.topics_api().create(topic_name)
        if join and self.is_logged_in:
            self.join_unlimited_group(topic_id)
        return topic_id

    async def dismiss_unlimited_group(self, topic_id: int | str) -> None:
        """Dismiss an unlimited group we own; members get ``uc_dismissals``."""
        await self.topics_api().dismiss(int(topic_id))
        # The core forgets a dismissed group when the server says so (UCDismissed); say it
        # now too, so a reconnect before that does not join it again.
        self._memory.forget_uc_topic(int(topic_id))

    async def unlimited_groups(self) -> list[int]:
        """The unlimited groups this account has joined, as the server knows them."""
        return await self.topics_api().topics()

    # ------------------------------------------------------------------ display

    def __repr__(self) -> str:
        uuid = f" uuid={self.uuid}" if self.uuid is not None else ""
        return (
            f"<MIMCUser {self._app_account!r} app={self._app_id} {self._lifecycle.state_word}"
            f"{uuid} resource={self._resource!r}>"
        )

    def _repr_html_(self) -> str:
        status = self.current_status
        rows = [
            ("account", self._app_account),
            ("app id", str(self._app_id)),
            ("state", self._lifecycle.state_word),
            ("uuid", "" if self.uuid is None else str(self.uuid)),
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
