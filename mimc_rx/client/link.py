"""``SessionLink``: one connection attempt's session, transport and fate.

Each login attempt (the first, or a reconnect) gets a fresh ``SessionLink``, so the fate of an
old websocket (a late close, a late event) never mixes with a new one. The link records what
the protocol said about its end (a refused BIND, a KICK, a protocol failure) as it happens, so
that when the transport reports the close, the lifecycle knows the real reason.
"""

from __future__ import annotations

import asyncio

from mimc_rx.protocol.events import Kicked, ProtocolFailure, StatusChange

from .seams import Transport, UserSession
from .values import CloseInfo, DisconnectReason

__all__ = ["LinkEnd", "SessionLink"]

LinkEnd = tuple[DisconnectReason, str]
"""Why a link ended: the reason and a human detail."""


class SessionLink:
    """One attempt's session, transport and fate.

    Attributes:
        session: the protocol core of this attempt.
        transport: set once the transport opened.
        login_waiter: resolves with the BIND result (or the reason there was none).
        bound: true once BIND succeeded; stays true after the end (it *was* online).
        end: why the link ended (or is ending), once known; the first reason wins.
        supervisor: the task waiting for the end of this link.
        generation: the lifecycle's generation when the attempt started; a logout, a close or
            a cancelled login bumps it, so the fate of an older attempt never decides a newer.
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
        session: UserSession,
        login_waiter: asyncio.Future[StatusChange],
        generation: int = 0,
    ) -> None:
        self.session = session
        self.generation = generation
        self.transport: Transport | None = None
        self.login_waiter = login_waiter
        self.bound = False
        self.end: LinkEnd | None = None
        self.supervisor: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        """True while commands may be sent: bound, open and not ending."""
        return self.bound and self.end is None and self.transport is not None

    def ending(self, reason: DisconnectReason, detail: str = "") -> None:
        """Record why the link ends, unless an earlier reason is already known."""
        if self.end is None:
            self.end = (reason, detail)

    def settle_login(self, status: StatusChange) -> None:
        """Resolve the login waiter with ``status`` unless it already has a result."""
        if not self.login_waiter.done():
            self.login_waiter.set_result(status)

    def bind_result(self, status: StatusChange) -> bool:
        """Take the BIND result (6.4); True when the refusal means the link must be closed."""
        if status.online:
            self.bound = True
            return False
        if self.end is None and not self.bound:
            # BIND refused. The web SDK keeps the socket open; nothing more can happen on it.
            self.ending(DisconnectReason.LOGIN_FAILED, _join(status.err_type, status.err_reason))
            return True
        return False

    def kicked(self, event: Kicked) -> None:
        """KICK (6.14): the link ends as ``KICKED`` (and the user will not reconnect)."""
        detail = _join(event.err_type, event.err_reason)
        if event.err_desc:
            detail = f"{detail}: {event.err_desc}" if detail else event.err_desc
        self.end = (DisconnectReason.KICKED, detail)

    def protocol_failed(self, event: ProtocolFailure) -> None:
        """The server sent bytes we cannot accept; the core asked to close."""
        detail = f"{event.reason}: {event.detail}" if event.detail else event.reason
        self.ending(DisconnectReason.PROTOCOL_FAILURE, detail)

    def closed(self, info: CloseInfo) -> LinkEnd:
        """The transport ended: the recorded reason if there is one, else the transport's."""
        self.ending(info.reason, info.detail)
        assert self.end is not None
        return self.end


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)
