"""``SessionPair``: one ``ClientSession`` joined to one ``ServerSession`` in memory.

Bytes go from one session's ``data_to_send`` into the other's ``receive_data`` until both are
quiet, exactly as a websocket would carry them, with a ``ManualClock`` instead of real time.
Every frame and event is recorded, so a test can look at the wire as well as the values.
What the server's business logic would do with its events is a callback (``on_server_event``);
``MemoryHub`` provides a small one that routes between several pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import ClientEvent, ServerEvent
from mimc_rx.protocol.server import ServerSession

__all__ = ["ManualClock", "SessionPair"]

MAX_ROUNDS = 1000
"""Upper bound of exchange rounds in one ``pump`` (a loop would be a bug, not a hang)."""


@dataclass
class ManualClock:
    """A clock tests move by hand: ``now`` in seconds for the sessions, ``ms()`` for ids."""

    now: float = 0.0
    epoch_ms: int = 1_700_000_000_000

    def ms(self) -> int:
        """Wall-clock milliseconds: ``epoch_ms`` plus ``now``."""
        return self.epoch_ms + int(self.now * 1000)

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


ServerEventHandler = Callable[["SessionPair", ServerEvent], None]


@dataclass
class SessionPair:
    """A client session and a server session connected back to back.

    Attributes:
        client, server: the two sessions.
        clock: the time both see.
        on_server_event: the server's business logic; called for every server event.
        client_events, server_events: everything emitted so far (see ``take_*``).
        c2s, s2c: every frame carried so far, in order.
        closed: the connection is gone (a side asked to close, the other saw EOF).
    """

    client: ClientSession
    server: ServerSession
    clock: ManualClock = field(default_factory=ManualClock)
    on_server_event: ServerEventHandler | None = None
    client_events: list[ClientEvent] = field(default_factory=list)
    server_events: list[ServerEvent] = field(default_factory=list)
    c2s: list[bytes] = field(default_factory=list)
    s2c: list[bytes] = field(default_factory=list)
    closed: bool = False

    def step(self) -> bool:
        """Carry one round of frames each way; True when anything moved."""
        now = self.clock.now
        moved = False
        for frame in self.client.data_to_send():
            moved = True
            self.c2s.append(frame)
            if not self.closed:
                self.server.receive_data(frame, now)
        for event in self.server.events_received():
            moved = True
            self.server_events.append(event)
            if self.on_server_event is not None:
                self.on_server_event(self, event)
        for frame in self.server.data_to_send():
            moved = True
            self.s2c.append(frame)
            if not self.closed:
                self.client.receive_data(frame, now)
        events = self.client.events_received()
        self.client_events.extend(events)
        moved = moved or bool(events)
        if not self.closed and (self.client.close_requested or self.server.close_requested):
            # Whoever asked, the websocket closes after the flush; both see EOF.
            self.closed = True
            self.client.receive_eof()
            self.server.receive_eof()
            moved = True
        return moved

    def pump(self) -> None:
        """Exchange frames until both sides are quiet."""
        for _ in range(MAX_ROUNDS):
            if not self.step():
                return
        raise RuntimeError(f"SessionPair did not settle in {MAX_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """Move the clock, fire the client's due timers (``expire``) and pump."""
        self.clock.advance(seconds)
        for session in (self.client, self.server):
            deadline = session.next_deadline()
            if deadline is not None and deadline <= self.clock.now:
                session.expire(self.clock.now)
        self.pump()

    def take_client_events(self) -> list[ClientEvent]:
        """The client events recorded so far, then forget them."""
        events, self.client_events = self.client_events, []
        return events

    def take_server_events(self) -> list[ServerEvent]:
        """The server events recorded so far, then forget them."""
        events, self.server_events = self.server_events, []
        return events
