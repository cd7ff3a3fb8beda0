"""The seams of the client: what it needs from a protocol core and from a transport.

``MIMCUser`` builds a fresh ``ClientSession`` and a fresh ``WebSocketTransport`` for every
connection, through two factories that tests replace (``tests/client/fakes.py``,
``mimc_rx.testing.loopback``). These protocols say what each side must offer, so mypy checks
the real classes and the fakes against the same contract (docs/sansio.md):

* ``DriverSession``: what the transport drives (bytes and time in, bytes and events out);
* ``UserSession``: that plus the commands the facade sends;
* ``Transport``: what the connection lifecycle needs from a transport;
* ``SessionFactory`` and ``TransportFactory``: how both are made;
* ``TokenFetcher``: where each login attempt gets its token (``mimc_rx.client.http`` has some).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from mimc_rx.protocol.events import ClientEvent, PacketId
from mimc_rx.protocol.memory import SessionMemory

from .values import CloseInfo, TransportOptions

__all__ = [
    "DriverSession",
    "EventSink",
    "SessionFactory",
    "TokenAnswer",
    "TokenFetcher",
    "Transport",
    "TransportFactory",
    "UserSession",
]

TokenAnswer: TypeAlias = Mapping[str, Any] | str | bytes
"""What a token fetcher returns: the token service's JSON, parsed or raw (docs/protocol.md 8.1)."""

TokenFetcher: TypeAlias = Callable[[], TokenAnswer | Awaitable[TokenAnswer]]
"""A sync or async callable returning a ``TokenAnswer``; called once per login attempt."""

EventSink = Callable[[Sequence[ClientEvent]], None]
"""Receives each batch of a session's events, on the loop."""


class DriverSession(Protocol):
    """The part of ``mimc_rx.protocol.ClientSession`` a transport drives."""

    def receive_data(self, data: bytes, now: float) -> None: ...
    def receive_eof(self) -> None: ...
    def expire(self, now: float) -> None: ...
    def events_received(self) -> list[ClientEvent]: ...
    def data_to_send(self) -> list[bytes]: ...
    def next_deadline(self) -> float | None: ...
    @property
    def close_requested(self) -> bool: ...


class UserSession(DriverSession, Protocol):
    """Everything the client needs from ``mimc_rx.protocol.ClientSession``."""

    @property
    def uuid(self) -> int | None: ...
    @property
    def token(self) -> str | None: ...
    def login(self, token_answer: TokenAnswer, now: float) -> None: ...
    def logout(self, now: float) -> None: ...
    def send_p2p(
        self, to_account: str, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def send_p2t(
        self, topic_id: int, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def send_uc(
        self, topic_id: int, payload: bytes | str, *, is_store: bool, biz_type: str, now: float
    ) -> PacketId: ...
    def join_uc(self, topic_id: int, now: float) -> PacketId: ...
    def quit_uc(self, topic_id: int, now: float) -> PacketId: ...
    def pull(self, now: float) -> PacketId: ...


class Transport(Protocol):
    """What the lifecycle needs from a transport (``WebSocketTransport`` or a test fake)."""

    @property
    def is_open(self) -> bool: ...
    async def open(self) -> None: ...
    def wake(self) -> None: ...
    async def wait_closed(self) -> CloseInfo: ...
    async def close(self, timeout: float | None = None) -> CloseInfo: ...  # noqa: ASYNC109


class SessionFactory(Protocol):
    """Builds the protocol core of one connection; inject to tune or fake it.

    ``memory`` is the user's ``SessionMemory`` (the same object for every connection of a
    user); ``auto_pull`` is ``MIMCUser(auto_pull=...)``.
    """

    def __call__(
        self,
        app_id: int,
        app_account: str,
        resource: str,
        *,
        memory: SessionMemory,
        auto_pull: bool,
    ) -> UserSession: ...


class TransportFactory(Protocol):
    """Builds the transport of one connection around its session; inject one in tests."""

    def __call__(
        self,
        session: UserSession,
        url: str,
        on_events: EventSink,
        options: TransportOptions,
    ) -> Transport: ...
