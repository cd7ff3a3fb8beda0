"""The guarded publishing hub behind every stream of ``MIMCUser``.

``StreamHub`` is the small publish side that turns an internal ``Subject`` into the read-only,
subscriber-safe ``Observable`` that ``MIMCUser`` exposes; ``UserStreams`` is the set of hubs of
one user; ``first_value`` awaits the first matching value of a stream without a race.

Why a hub and not a bare Subject: RxPY calls observers synchronously, so an exception raised in
one subscriber's ``on_next`` would climb back into our receive loop and skip every later
subscriber. Each subscription made through ``StreamHub.observable`` is wrapped on its own: a
subscriber that raises is logged and keeps its subscription, and the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.subject import BehaviorSubject, Subject

from mimc_rx.protocol.events import (
    ClientEvent,
    P2PMessage,
    P2TMessage,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)

from .values import OFFLINE, Disconnected, Reconnecting

__all__ = [
    "StreamHub",
    "UserStreams",
    "first_value",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _GuardedObserver(abc.ObserverBase[_T]):
    """Forwards to one subscriber and logs what it raises instead of propagating it."""

    __slots__ = ("_name", "_observer")

    def __init__(self, observer: abc.ObserverBase[_T], name: str) -> None:
        self._observer = observer
        self._name = name

    def on_next(self, value: _T) -> None:
        try:
            self._observer.on_next(value)
        except Exception:
            log.exception("a subscriber of %s raised; the session goes on", self._name)

    def on_error(self, error: Exception) -> None:
        try:
            self._observer.on_error(error)
        except Exception:
            log.exception("a subscriber of %s raised in on_error", self._name)

    def on_completed(self) -> None:
        try:
            self._observer.on_completed()
        except Exception:
            log.exception("a subscriber of %s raised in on_completed", self._name)


class StreamHub(Generic[_T]):
    """The publish side of one facade stream.

    Args:
        name: the stream's public name, used in log lines.
        initial: the first value of a replaying stream.
        replay: replay the latest value to late subscribers (a ``BehaviorSubject`` behind
            it, starting with ``initial``); otherwise a plain ``Subject``.
        event_type: the type of the values, set as ``observable.event_type`` so that an
            adapter knows the columns of a stream that has not emitted yet (an empty
            ``LiveFrame`` of ``p2p_messages`` still shows every column).
    """

    def __init__(
        self,
        name: str,
        *,
        initial: _T | None = None,
        replay: bool = False,
        event_type: type | None = None,
    ) -> None:
        self.name = name
        self._replay = replay
        self._subject: Subject[_T]
        if replay:
            self._subject = BehaviorSubject(initial)  # type: ignore[arg-type]
        else:
            self._subject = Subject()
        subject = self._subject

        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            return subject.subscribe(_GuardedObserver(observer, name), scheduler=scheduler)

        self.observable: Observable[_T] = reactivex.create(subscribe)
        if event_type is not None:
            setattr(self.observable, "event_type", event_type)  # noqa: B010 - not declared

    @property
    def observed(self) -> bool:
        """True when someone is subscribed (a value published now would reach somebody)."""
        return bool(self._subject.observers)

    @property
    def latest(self) -> _T | None:
        """The value a late subscriber would get first (replaying hubs only)."""
        if isinstance(self._subject, BehaviorSubject):
            return self._subject.value  # type: ignore[no-any-return]
        return None

    def publish(self, value: _T) -> None:
        """Emit ``value`` to every subscriber, synchronously, on the caller's thread."""
        subject = self._subject
        # A plain Subject drops a value nobody listens to; skipping its lock and observer copy
        # matters on the receive path, where ``events`` is published for every message.
        if self._replay or subject.observers:
            subject.on_next(value)

    def complete(self) -> None:
        """End the stream for good (the user object is being discarded)."""
        self._subject.on_completed()

    def __repr__(self) -> str:
        return f"<StreamHub {self.name} observers={len(self._subject.observers)}>"


class UserStreams:
    """The hubs behind every stream of one ``MIMCUser``, named after its properties.

    The facade reads ``.observable`` from them; the connection lifecycle and the event router
    publish to them. ``complete()`` ends them all when the user is closed.
    """

    __slots__ = (
        "disconnects",
        "events",
        "group_messages",
        "p2p_messages",
        "pull_notifications",
        "reconnects",
        "sent_messages",
        "server_acks",
        "status",
        "uc_dismissals",
        "uc_join_results",
        "uc_messages",
        "uc_quit_results",
    )

    def __init__(self) -> None:
        self.status: StreamHub[StatusChange] = StreamHub(
            "status", initial=OFFLINE, replay=True, event_type=StatusChange
        )
        self.events: StreamHub[ClientEvent] = StreamHub("events")
        self.server_acks: StreamHub[ServerAck] = StreamHub("server_acks", event_type=ServerAck)
        self.p2p_messages: StreamHub[P2PMessage] = StreamHub("p2p_messages", event_type=P2PMessage)
        self.group_messages: StreamHub[P2TMessage] = StreamHub(
            "group_messages", event_type=P2TMessage
        )
        self.uc_messages: StreamHub[UCMessage] = StreamHub("uc_messages", event_type=UCMessage)
        self.uc_join_results: StreamHub[UCJoinResult] = StreamHub(
            "uc_join_results", event_type=UCJoinResult
        )
        self.uc_quit_results: StreamHub[UCQuitResult] = StreamHub(
            "uc_quit_results", event_type=UCQuitResult
        )
        self.uc_dismissals: StreamHub[UCDismissed] = StreamHub(
            "uc_dismissals", event_type=UCDismissed
        )
        self.pull_notifications: StreamHub[PullNotification] = StreamHub(
            "pull_notifications", event_type=PullNotification
        )
        self.disconnects: StreamHub[Disconnected] = StreamHub(
            "disconnects", event_type=Disconnected
        )
        self.reconnects: StreamHub[Reconnecting] = StreamHub("reconnects", event_type=Reconnecting)
        self.sent_messages: StreamHub[P2PMessage | P2TMessage] = StreamHub("sent_messages")

    def complete(self) -> None:
        """End every stream for good (the user object is being discarded)."""
        for hub in self.all():
            hub.complete()

    def all(self) -> tuple[StreamHub[Any], ...]:
        """Every hub, status first."""
        return (
            self.status,
            self.events,
            self.server_acks,
            self.p2p_messages,
            self.group_messages,
            self.uc_messages,
            self.uc_join_results,
            self.uc_quit_results,
            self.uc_dismissals,
            self.pull_notifications,
            self.disconnects,
            self.reconnects,
            self.sent_messages,
        )


def first_value(
    source: Observable[_T],
    predicate: Callable[[_T], bool] | None = None,
    timeout: float | None = None,
) -> asyncio.Future[_T]:
    """Subscribe now; the returned future resolves with the first (matching) value of ``source``.

    Because the subscription is made before this returns, the usual pattern has no race::

        arrival = first_value(bob.p2p_messages, timeout=5)
        alice.send_message("bob", "hi")
        message = await arrival

    The future fails with ``TimeoutError`` when nothing matched within ``timeout`` seconds, with
    the stream's error if it failed, and with ``LookupError`` if it completed. Cancelling the
    future unsubscribes. Must be called on the running loop.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def on_next(value: _T) -> None:
        if not future.done() and (predicate is None or predicate(value)):
            future.set_result(value)

    def on_error(error: Exception) -> None:
        if not future.done():
            future.set_exception(error)

    def on_completed() -> None:
        if not future.done():
            future.set_exception(LookupError("the stream completed without a matching value"))

    def on_timeout() -> None:
        if not future.done():
            future.set_exception(TimeoutError(f"no matching value within {timeout:g} s"))

    subscription = source.subscribe(on_next, on_error, on_completed)
    timer = loop.call_later(timeout, on_timeout) if timeout is not None else None

    def cleanup(_future: asyncio.Future[_T]) -> None:
        subscription.dispose()
        if timer is not None:
            timer.cancel()

    future.add_done_callback(cleanup)
    if future.done():  # a replaying stream matched during subscribe
        cleanup(future)
    return future
