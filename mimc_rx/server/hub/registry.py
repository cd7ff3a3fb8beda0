"""Who is connected: :class:`ClientLink`, what the hub needs of a connection, and the
:class:`Registry` of this process's connections, bound ones by ``(uuid, resource)``.

A protocol rather than the gateway's class, so the hub (and the push API) depend on no
transport: the gateway imports the hub, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from mimc_rx.protocol.events import Peer
from mimc_rx.protocol.server import ServerSession
from mimc_rx.server.config import AppConfig
from mimc_rx.server.storage import User

__all__ = ["ClientLink", "Registry"]


class ClientLink(Protocol):
    """What the hub needs of one client connection; the gateway's connection is one.

    Attributes:
        session: the sans-I/O server session the hub commands.
        user, app, resource, peer: who is bound here (None / "" before BIND).
        last_seen: loop time of the last message received, for the idle sweep.
        opened_at: loop time the connection was accepted, for the login timeout.
    """

    session: ServerSession
    user: User | None
    app: AppConfig | None
    resource: str
    peer: Peer
    last_seen: float
    opened_at: float

    @property
    def can_send(self) -> bool:
        """True while session commands may be issued (open and bound)."""
        ...

    def bound(self, user: User, app: AppConfig, resource: str) -> None:
        """Record the identity a successful BIND established."""

    def pump(self) -> None:
        """Move the session's frames to the writer (at the end of a tick)."""

    def kick(self, err_type: str, err_reason: str, err_desc: str) -> None:
        """Send KICK (docs/protocol.md 6.13) and close."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the queued frames are written. Idempotent."""

    def expire(self, now: float) -> None:
        """Run the session's timers if their deadline passed."""

    def check_writer(self, now: float) -> None:
        """Close the connection when one write has been blocked too long."""


class Registry:
    """The connections of this process: all of them, the unbound ones, the bound ones by user.

    Attributes:
        connections: every accepted websocket not yet detached.
        unbound: connections not (yet) bound to a user: counted against
            ``ServerConfig.max_pending_connections``.
        bound: ``uuid -> resource -> connection``; one connection per ``(uuid, resource)``.
    """

    __slots__ = ("bound", "connections", "unbound")

    def __init__(self) -> None:
        self.connections: set[ClientLink] = set()
        self.unbound: set[ClientLink] = set()
        self.bound: dict[int, dict[str, ClientLink]] = {}

    def attach(self, conn: ClientLink) -> None:
        """A websocket was accepted."""
        self.connections.add(conn)
        self.unbound.add(conn)

    def detach(self, conn: ClientLink) -> bool:
        """Forget ``conn``; True when it held its ``(uuid, resource)`` (its presence goes)."""
        self.connections.discard(conn)
        self.unbound.discard(conn)
        if conn.user is None:
            return False
        sessions = self.bound.get(conn.user.uuid)
        if sessions is None or sessions.get(conn.resource) is not conn:
            return False
        del sessions[conn.resource]
        if not sessions:
            del self.bound[conn.user.uuid]
        return True

    def bind(self, conn: ClientLink, uuid: int, resource: str) -> ClientLink | None:
        """Record ``conn`` as the holder of ``(uuid, resource)``; the older holder, if any."""
        self.unbound.discard(conn)
        sessions = self.bound.setdefault(uuid, {})
        older = sessions.get(resource)
        sessions[resource] = conn
        return older if older is not conn else None

    def holder(self, uuid: int, resource: str) -> ClientLink | None:
        """The connection bound as ``(uuid, resource)`` here, or None."""
        return self.bound.get(uuid, {}).get(resource)

    def sessions_of(self, uuid: int) -> Iterable[ClientLink]:
        """The bound connections of a user."""
        return self.bound.get(uuid, {}).values()

    def online_resources(self, uuid: int) -> list[str]:
        """The resources a user is bound with right now (in this process)."""
        return list(self.bound.get(uuid, {}))

    def targets(
        self, uuids: Iterable[int], resource: str = "", exclude: tuple[int, str] | None = None
    ) -> Iterator[ClientLink]:
        """The bound connections of ``uuids`` (only ``resource`` if set), but ``exclude``."""
        for uuid in uuids:
            for held, conn in self.bound.get(uuid, {}).items():
                if resource and held != resource:
                    continue
                if exclude is not None and exclude == (uuid, held):
                    continue
                yield conn
