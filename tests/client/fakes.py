"""In-memory stand-ins for the protocol core and the transport, for facade unit tests.

``FakeNet`` plays the network and the server: it builds ``FakeSession`` / ``FakeTransport``
pairs through ``MIMCUser``'s injection points (they follow ``UserSession`` and ``Transport`` of
``mimc_rx.client.seams``, and mypy checks it), answers every opened connection's BIND as
scripted, lets a test push core events to the user, and drops connections on demand. No bytes
are involved: these tests are about the facade's behaviour (dispatch, reconnect, acks).

Where the real core applies a protocol rule the facade relies on, the fake applies the same
rule with the core's own code: ``check_payload`` on sends, and the user's ``SessionMemory`` on
pushed P2P/P2T messages (so a redelivery after a reconnect is dropped only if the user really
hands the same memory to every session).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mimc_rx.client.seams import (
    EventSink,
    SessionFactory,
    TokenAnswer,
    TransportFactory,
    UserSession,
)
from mimc_rx.client.values import CloseInfo, DisconnectReason, TransportOptions
from mimc_rx.errors import ConnectionClosed, NotLoggedIn
from mimc_rx.protocol.client import P2P_TEXT_LIMIT, UC_TEXT_LIMIT, check_payload
from mimc_rx.protocol.events import ClientEvent, P2PMessage, P2TMessage, PacketId, StatusChange
from mimc_rx.protocol.memory import SessionMemory

__all__ = ["FakeNet", "FakeSession", "FakeTransport", "token_answer"]


def token_answer(account: str = "alice", app_id: int = 1001, uuid: int = 77) -> dict[str, Any]:
    """A well-formed token service answer (docs/protocol.md 8.1)."""
    return {
        "code": 200,
        "message": "success",
        "data": {
            "appId": str(app_id),
            "appPackage": "com.example",
            "appAccount": account,
            "miChid": 9,
            "miUserId": str(uuid),
            "miUserSecurityKey": "a2V5",
            "token": f"tok-{account}",
        },
    }


class FakeSession:
    """Records commands; hands out ids; knows whether it is bound from the events it saw."""

    def __init__(
        self,
        app_id: int,
        app_account: str,
        resource: str,
        *,
        memory: SessionMemory | None = None,
        auto_pull: bool = False,
    ) -> None:
        self.app_id, self.app_account, self.resource = app_id, app_account, resource
        self.memory = memory or SessionMemory()
        self.auto_pull = auto_pull
        self.answer: Any = None
        self.sent: list[tuple[str, Any]] = []
        self.pending: list[ClientEvent] = []
        self.bound = False
        self.closing = False
        self._n = 0

    def login(self, token_answer: TokenAnswer, now: float) -> None:
        self.answer = token_answer
        if not isinstance(token_answer, dict) or token_answer.get("code") != 200:
            self.pending.append(
                StatusChange(online=False, err_type="get token failed", err_reason="bad answer")
            )

    def receive_data(self, data: bytes, now: float) -> None: ...
    def receive_eof(self) -> None:
        self.bound = False

    def expire(self, now: float) -> None: ...

    def events_received(self) -> list[ClientEvent]:
        out, self.pending = self.pending, []
        return out

    def data_to_send(self) -> list[bytes]:
        return []

    def next_deadline(self) -> float | None:
        return None

    @property
    def close_requested(self) -> bool:
        return self.closing

    @property
    def is_logged_in(self) -> bool:
        return self.bound

    @property
    def uuid(self) -> int | None:
        return int(self.answer["data"]["miUserId"]) if self.answer else None

    @property
    def token(self) -> str | None:
        return str(self.answer["data"]["token"]) if self.answer else None

    def _cmd(self, kind: str, *args: Any) -> PacketId:
        if not self.bound:
            raise NotLoggedIn(kind)
        self._n += 1
        self.sent.append((kind, args))
        return PacketId(f"pid{self._n}")

    def logout(self, now: float) -> None:
        self.sent.append(("logout", ()))
        self.closing = True

    def send_p2p(
        self, to_account: str, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId:
        data = check_payload(payload, P2P_TEXT_LIMIT)
        return self._cmd("p2p", to_account, data, is_store, biz_type)

    def send_p2t(
        self, topic_id: int, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId:
        data = check_payload(payload, P2P_TEXT_LIMIT)
        return self._cmd("p2t", topic_id, data, is_store, biz_type)

    def send_uc(
        self, topic_id: int, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId:
        data = check_payload(payload, UC_TEXT_LIMIT)
        return self._cmd("uc", topic_id, data, is_store, biz_type)

    def join_uc(self, topic_id: int, now: float) -> PacketId:
        return self._cmd("join", topic_id)

    def quit_uc(self, topic_id: int, now: float) -> PacketId:
        return self._cmd("quit", topic_id)

    def pull(self, now: float) -> PacketId:
        return self._cmd("pull")


class FakeTransport:
    """A connection that exists only in memory; ``FakeNet`` drives it."""

    def __init__(
        self,
        net: FakeNet,
        session: FakeSession,
        on_events: EventSink,
    ) -> None:
        self.net, self.session, self.on_events = net, session, on_events
        self.open_ = False
        self.wakes = 0
        self.closes = 0
        self._done: asyncio.Future[CloseInfo] = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        return self.open_ and not self._done.done()

    async def open(self) -> None:
        if self.net.connect_errors:
            raise ConnectionClosed(self.net.connect_errors.pop(0))
        self.open_ = True
        bind = self.net.bind_results.pop(0) if self.net.bind_results else StatusChange(online=True)
        if bind is not None:
            asyncio.get_running_loop().call_soon(self.push, bind)

    def push(self, *events: ClientEvent) -> None:
        """Deliver events as if the session had produced them from server frames.

        Like the core, the session drops a P2P/P2T message whose sequence its memory has seen.
        """
        delivered: list[ClientEvent] = []
        for event in events:
            if isinstance(event, StatusChange) and event.online:
                self.session.bound = True
            if isinstance(event, P2PMessage | P2TMessage) and not (
                self.session.memory.first_delivery(event.sequence)
            ):
                continue
            delivered.append(event)
        self.on_events(delivered)

    def wake(self) -> None:
        self.wakes += 1
        if self.session.closing and self.net.close_on_logout:
            self.drop(DisconnectReason.SERVER_CLOSED, by_us=True)

    def drop(
        self,
        reason: DisconnectReason = DisconnectReason.CONNECTION_LOST,
        detail: str = "",
        *,
        by_us: bool = False,
    ) -> None:
        if not self._done.done():
            self.session.bound = False
            self._done.set_result(CloseInfo(reason=reason, detail=detail, code=1006, by_us=by_us))

    async def wait_closed(self) -> CloseInfo:
        return await asyncio.shield(self._done)

    async def close(self, timeout: float | None = None) -> CloseInfo:  # noqa: ASYNC109
        self.closes += 1
        if self.net.close_drops:
            self.drop(DisconnectReason.SERVER_CLOSED, by_us=True)
        return await self.wait_closed()


class FakeNet:
    """Factories for ``MIMCUser`` plus the script of what the fake server does."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.transports: list[FakeTransport] = []
        self.bind_results: list[StatusChange | None] = []
        self.connect_errors: list[str] = []
        self.close_on_logout = True
        self.close_drops = True
        """False: ``close()`` waits for a ``drop()`` the test does (a slow closing handshake)."""

    def session_factory(
        self,
        app_id: int,
        app_account: str,
        resource: str,
        *,
        memory: SessionMemory,
        auto_pull: bool,
    ) -> FakeSession:
        session = FakeSession(app_id, app_account, resource, memory=memory, auto_pull=auto_pull)
        self.sessions.append(session)
        return session

    def transport_factory(
        self,
        session: UserSession,
        url: str,
        on_events: EventSink,
        options: TransportOptions,
    ) -> FakeTransport:
        assert isinstance(session, FakeSession)
        transport = FakeTransport(self, session, on_events)
        self.transports.append(transport)
        return transport

    @property
    def current(self) -> FakeTransport:
        return self.transports[-1]

    def kwargs(self) -> dict[str, Any]:
        # Checked against the seams: a fake that drifts from them fails mypy here.
        session_factory: SessionFactory = self.session_factory
        transport_factory: TransportFactory = self.transport_factory
        """Keyword arguments wiring a ``MIMCUser`` to this net."""
        return {
            "session_factory": session_factory,
            "transport_factory": transport_factory,
            "url": "ws://fake.invalid/",
        }
