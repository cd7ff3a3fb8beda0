"""``MIMCUser`` wired to the real protocol core and ``MemoryHub``, with no sockets.

``LoopbackNet`` gives ``MIMCUser`` a session factory (``MemoryHub.connect(login=False)``: a
real ``ClientSession`` joined to a real ``ServerSession``) and a transport factory whose
transport pumps the hub on the event loop and hands each user its session's events. Real frames
flow (CONN, signed BIND, RC4 SECMSG, COMPOUND, acks); only the websocket is missing. Use it to
test an application's use of ``MIMCUser`` in milliseconds::

    net = LoopbackNet()
    alice, bob = net.user("alice"), net.user("bob")
    await alice.login(); await bob.login()
    arrival = first_value(bob.p2p_messages, timeout=5)
    alice.send_message("bob", "hi")
    assert (await arrival).text == "hi"

``bench/client_bench.py`` uses it to feed a million messages through the whole client stack.
Import it from here (``mimc_rx.testing.loopback``): unlike the rest of ``mimc_rx.testing``, it
loads the asyncio client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mimc_rx.client.seams import EventSink, UserSession
from mimc_rx.client.user import MIMCUser
from mimc_rx.client.values import CloseInfo, DisconnectReason, TransportOptions
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.memory import SessionMemory
from mimc_rx.testing import MemoryHub, SessionPair

__all__ = ["LoopbackNet", "LoopbackTransport"]


class LoopbackTransport:
    """One user's "connection": its ``SessionPair`` inside the shared hub.

    It plays ``WebSocketTransport``'s part for ``MIMCUser``: ``wake()`` asks the net to pump,
    the pump hands the session's events to ``on_events``, and the connection ends when the
    server side closes the pair (KICK, logout) or when a test calls ``drop()``.
    """

    def __init__(
        self,
        net: LoopbackNet,
        pair: SessionPair,
        on_events: EventSink,
    ) -> None:
        self.net, self.pair, self.on_events = net, pair, on_events
        self.opened = False
        self._done: asyncio.Future[CloseInfo] = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        """True from ``open()`` until the connection ends."""
        return self.opened and not self._done.done()

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._done.done()

    async def open(self) -> None:
        """Join the net; the first pump carries the CONN the session queued at login."""
        self.opened = True
        self.net.transports.append(self)
        self.wake()

    def wake(self) -> None:
        """The session has frames to send: pump the net soon."""
        self.net.schedule()

    def deliver_events(self) -> None:
        """Hand the session's pending events to the user; notice the server's close."""
        events = self.pair.take_client_events()
        if events:
            self.on_events(events)
        if self.pair.closed and not self._done.done():
            self._done.set_result(CloseInfo(reason=DisconnectReason.SERVER_CLOSED, code=1000))

    def drop(self) -> None:
        """Cut the connection as a network failure would."""
        if not self._done.done():
            self._done.set_result(CloseInfo(reason=DisconnectReason.CONNECTION_LOST, code=1006))
        if not self.pair.closed:
            self.pair.closed = True
            self.pair.client.receive_eof()
            self.pair.server.receive_eof()
        self.deliver_events()

    async def wait_closed(self) -> CloseInfo:
        """Wait until the connection has ended and return how."""
        return await asyncio.shield(self._done)

    async def close(self, timeout: float | None = None) -> CloseInfo:  # noqa: ASYNC109
        """Close from our side (reported as a lost connection, like ``drop()``)."""
        self.drop()
        return await self.wait_closed()


class LoopbackNet:
    """A ``MemoryHub`` plus the factories that put ``MIMCUser`` objects on it.

    Args:
        hub: the hub to use; a fresh ``MemoryHub`` by default.

    Attributes:
        transports: the connections open now, oldest first (``transports[-1]`` is the latest).
    """

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self.hub = hub or MemoryHub()
        self.transports: list[LoopbackTransport] = []
        self._pairs: dict[int, SessionPair] = {}
        self._scheduled = False

    def user(self, account: str, **kwargs: Any) -> MIMCUser:
        """A ``MIMCUser`` for ``account`` on this hub (the account is registered)."""
        self.hub.add_account(account)
        return MIMCUser(
            account,
            app_id=self.hub.app_id,
            token_fetcher=lambda: self.hub.token_for(self.hub.accounts[account]),
            url="ws://loopback.invalid/",
            session_factory=self.session_factory,
            transport_factory=self.transport_factory,
            **kwargs,
        )

    def session_factory(
        self,
        app_id: int,
        app_account: str,
        resource: str,
        *,
        memory: SessionMemory,
        auto_pull: bool,
    ) -> ClientSession:
        """``MIMCUser``'s session factory: a new pair in the hub, not logged in yet."""
        pair = self.hub.connect(
            app_account, resource=resource, login=False, memory=memory, auto_pull=auto_pull
        )
        self._pairs[id(pair.client)] = pair
        return pair.client

    def transport_factory(
        self,
        session: UserSession,
        url: str,
        on_events: EventSink,
        options: TransportOptions,
    ) -> LoopbackTransport:
        """``MIMCUser``'s transport factory: the transport of the pair behind ``session``."""
        return LoopbackTransport(self, self._pairs[id(session)], on_events)

    def schedule(self) -> None:
        """Pump once soon on the running loop (many wakes in one loop turn make one pump)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.pump)

    def pump(self) -> None:
        """Move every frame, then hand every user its events."""
        self._scheduled = False
        self.hub.pump()
        for transport in list(self.transports):
            if transport.opened:
                transport.deliver_events()
        self.transports = [t for t in self.transports if not t.closed]
