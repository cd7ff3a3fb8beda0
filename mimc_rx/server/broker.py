"""Routing between server processes: who holds which connection, and signals to the holder.

Theory of operation
-------------------
With several server processes (issue 14), alice may be connected to one and bob to another.
The database is the only source of truth for messages: a stored message is committed before its
sender's ack, whatever the broker does. The broker carries only what makes delivery *prompt*:

* **presence**: which process ("node") holds each ``(uuid, resource)`` connection;
* **signals** to the node that holds a connection: a live delivery (the encoded message), a
  group fan-out, a kick (the same resource logged in on another node), or "look now" (there is
  stored backlog: pull it).

So a lost signal (a Redis restart, a full buffer) only delays a delivery until the client's next
pull or login, never loses a message; see docs/scale-out.md for what each engine guarantees.

Two implementations of :class:`Broker`:

* :class:`LocalBroker` (this module), for the single-process default: presence and signals in
  memory. Several local brokers can share one :class:`LocalBus`, which makes an in-process
  model of several nodes for tests of the hub.
* :class:`~mimc_rx.server.broker_redis.RedisBroker`, for several processes, on Redis
  publish/subscribe with presence that expires with its node.

Signals are :class:`Signal` values; :func:`encode_signal` / :func:`decode_signal` are their wire
form between processes (a JSON header line, then the opaque body bytes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "Broker",
    "LocalBroker",
    "LocalBus",
    "ResyncHandler",
    "Signal",
    "SignalHandler",
    "SignalKind",
    "decode_signal",
    "dispatch",
    "encode_signal",
    "new_node_id",
    "stamped",
]

log = logging.getLogger(__name__)


class SignalKind(StrEnum):
    """What a signal asks the receiving node to do."""

    DELIVER = "deliver"
    """Hand ``body`` (an encoded delivery) to the connections of ``uuids`` (``resource`` if set)."""
    FANOUT = "fanout"
    """Hand ``body`` (an encoded group message of ``topic_id``) to the members in ``uuids``."""
    KICK = "kick"
    """The connection ``(uuids[0], resource)`` logged in elsewhere: kick the local one."""
    LOOK = "look"
    """Stored messages wait for ``uuids``: tell their connections to pull (docs 6.10)."""
    CHANGED = "changed"
    """Broadcast: something cached changed (``topic_id``: a group's members); reload it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """One instruction to the node holding some connections. ``body`` is opaque here."""

    kind: SignalKind
    uuids: tuple[int, ...] = ()
    resource: str = ""
    """Only this resource of the user ("" for every resource)."""
    topic_id: int = 0
    exclude: tuple[int, str] | None = None
    """A connection ``(uuid, resource)`` to leave out: the sender's own, for a group message."""
    origin: str = ""
    """The node that sent it (set by the broker)."""
    body: bytes = b""


SignalHandler = Callable[[Signal], None]
"""Called on the event loop for each signal addressed to this node."""

ResyncHandler = Callable[[], None]
"""Called after the broker lost signals (Redis restarted or was unreachable): the hub should
tell its connections to look for stored messages, since some live deliveries may be lost."""


def new_node_id() -> str:
    """A fresh node id: unique per process start, so a restarted process is a new node."""
    return uuidlib.uuid4().hex[:16]


def encode_signal(signal: Signal) -> bytes:
    """The wire form of a signal: a JSON header, a newline, then the body."""
    header = {
        "k": signal.kind.value,
        "u": list(signal.uuids),
        "r": signal.resource,
        "t": signal.topic_id,
        "x": list(signal.exclude) if signal.exclude else None,
        "o": signal.origin,
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + signal.body


def decode_signal(data: bytes) -> Signal:
    """Parse :func:`encode_signal`'s output.

    Raises:
        ValueError: ``data`` is not a signal (another program publishing on our channel).
    """
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise ValueError("not a signal: no header line")
    try:
        header = json.loads(head)
        exclude = header.get("x")
        return Signal(
            kind=SignalKind(header["k"]),
            uuids=tuple(int(u) for u in header.get("u", ())),
            resource=str(header.get("r", "")),
            topic_id=int(header.get("t", 0)),
            exclude=(int(exclude[0]), str(exclude[1])) if exclude else None,
            origin=str(header.get("o", "")),
            body=body,
        )
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        # ValueError covers bad JSON (JSONDecodeError) and an unknown kind.
        raise ValueError(f"not a signal: {type(exc).__name__}: {exc}") from None


def dispatch(handler: SignalHandler | None, signal: Signal) -> None:
    """Call ``handler``; a handler that raises is logged and never stops the broker."""
    if handler is None:
        return
    try:
        handler(signal)
    except Exception:
        log.exception("signal handler failed on %s", signal.kind)


@runtime_checkable
class Broker(Protocol):
    """Presence and signals between server processes (see the module docstring).

    Attributes:
        node_id: this process's id in presence entries and channel names.
    """

    node_id: str

    async def start(self, on_signal: SignalHandler, on_resync: ResyncHandler | None = None) -> None:
        """Register this node and start receiving signals. Raises if the engine is unreachable."""

    async def close(self) -> None:
        """Drop this node's presence and stop. Idempotent."""

    async def claim(self, uuid: int, resource: str) -> str | None:
        """Record that this node holds ``(uuid, resource)`` (a BIND succeeded).

        If another live node held it, that node is sent a KICK signal and its id returned (the
        newer login wins, as in one process). Never raises on an engine failure: presence is
        restored when the engine is back.
        """
        ...

    async def release(self, uuid: int, resource: str) -> None:
        """Forget ``(uuid, resource)`` unless another node has claimed it since."""

    async def holders(self, uuids: Iterable[int]) -> dict[int, dict[str, str]]:
        """Who holds the users' connections: ``{uuid: {resource: node}}``, live nodes only.

        Users with no connection are absent. On an engine failure: ``{}`` (the messages wait in
        the database for the next pull or login).
        """
        ...

    async def send(self, node: str, signal: Signal) -> bool:
        """Hand a signal to ``node`` (this node's own: on the next loop iteration).

        Returns False when it could not be handed over (logged once per outage; not an error).
        """
        ...

    async def broadcast(self, signal: Signal) -> bool:
        """Hand a signal to every other node; False when it could not be published."""
        ...


@dataclass(eq=False)
class LocalBus:
    """What several :class:`LocalBroker` s of one process share: a model of Redis in memory."""

    nodes: dict[str, LocalBroker] = field(default_factory=dict)
    presence: dict[int, dict[str, str]] = field(default_factory=dict)


class LocalBroker:
    """The in-process broker: the single-process default, and multi-node tests of the hub.

    Args:
        bus: shared with other local brokers to model several nodes; a private one by default.
        node_id: this node's id.
    """

    def __init__(self, bus: LocalBus | None = None, node_id: str | None = None) -> None:
        self.bus = bus if bus is not None else LocalBus()
        self.node_id = node_id or new_node_id()
        self._on_signal: SignalHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<LocalBroker {self.node_id} of {len(self.bus.nodes)} nodes>"

    async def start(self, on_signal: SignalHandler, on_resync: ResyncHandler | None = None) -> None:
        """Join the bus. ``on_resync`` is never called: nothing is lost in memory."""
        self._on_signal = on_signal
        self._loop = asyncio.get_running_loop()
        self.bus.nodes[self.node_id] = self

    async def close(self) -> None:
        """Leave the bus with this node's presence (as a process that stopped)."""
        self.bus.nodes.pop(self.node_id, None)
        for uuid, held in list(self.bus.presence.items()):
            for resource in [r for r, n in held.items() if n == self.node_id]:
                del held[resource]
            if not held:
                del self.bus.presence[uuid]

    async def claim(self, uuid: int, resource: str) -> str | None:
        """Hold ``(uuid, resource)``; kick and return another live holder."""
        held = self.bus.presence.setdefault(uuid, {})
        old = held.get(resource)
        held[resource] = self.node_id
        if old is None or old == self.node_id or old not in self.bus.nodes:
            return None
        await self.send(old, Signal(kind=SignalKind.KICK, uuids=(uuid,), resource=resource))
        return old

    async def release(self, uuid: int, resource: str) -> None:
        """Forget ``(uuid, resource)`` if this node still holds it."""
        held = self.bus.presence.get(uuid)
        if held is not None and held.get(resource) == self.node_id:
            del held[resource]
            if not held:
                del self.bus.presence[uuid]

    async def holders(self, uuids: Iterable[int]) -> dict[int, dict[str, str]]:
        """Who holds the users' connections, live nodes only."""
        found: dict[int, dict[str, str]] = {}
        for uuid in uuids:
            held = {r: n for r, n in self.bus.presence.get(uuid, {}).items() if n in self.bus.nodes}
            if held:
                found[uuid] = held
        return found

    async def send(self, node: str, signal: Signal) -> bool:
        """Queue the signal for ``node``'s handler on the next loop iteration."""
        target = self.bus.nodes.get(node)
        if target is None:
            return False
        target._receive(stamped(signal, self.node_id))
        return True

    async def broadcast(self, signal: Signal) -> bool:
        """Queue the signal for every other node."""
        sent = stamped(signal, self.node_id)
        for node_id, target in list(self.bus.nodes.items()):
            if node_id != self.node_id:
                target._receive(sent)
        return True

    def _receive(self, signal: Signal) -> None:
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(dispatch, self._on_signal, signal)


def stamped(signal: Signal, origin: str) -> Signal:
    """``signal`` as sent by ``origin``."""
    return signal if signal.origin == origin else dataclasses.replace(signal, origin=origin)
