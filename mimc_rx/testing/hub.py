"""``MemoryHub``: a tiny in-memory MIMC server that routes between ``SessionPair``s.

It is the least business logic that makes the protocol observable end to end: a token per
account, BIND through ``accept_bind``, one sequence counter for everything (sequences only
need to grow, docs/protocol.md 6.15), P2P/P2T routing with PACKET_ACK, a per-account store that
PULL replays past the last SEQUENCE_ACK, and unlimited groups. Meant for tests and demos,
of this project and of its users; the real local server lives in ``mimc_rx.server``.

    hub = MemoryHub()
    alice, bob = hub.connect("alice"), hub.connect("bob")
    packet_id = alice.client.send_p2p("bob", b"hi", now=hub.clock.now)
    hub.pump()
    bob.take_client_events()   # [P2PMessage(packet_id=..., payload=b"hi", ...)]
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import (
    BindRequested,
    Delivery,
    P2PReceived,
    P2TReceived,
    PacketId,
    PullRequested,
    SequenceAcked,
    ServerEvent,
    UCDelivery,
    UCJoinRequested,
    UCMessageReceived,
    UCPinged,
    UCQuitRequested,
)
from mimc_rx.protocol.ids import CounterIdFactory, WebIdFactory
from mimc_rx.protocol.server import ServerSession, delivery_of
from mimc_rx.testing.pair import MAX_ROUNDS, ManualClock, SessionPair

__all__ = ["DEFAULT_APP_ID", "DEFAULT_PACKAGE", "FakeAccount", "MemoryHub", "token_answer"]

DEFAULT_APP_ID = 1000000000000000001
DEFAULT_PACKAGE = "com.example.fakeapp"


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeAccount:
    """An account the hub knows: its uuid, security key and token (all fake)."""

    app_account: str
    uuid: int
    security_key_b64: str
    token: str


def token_answer(
    account: FakeAccount, *, app_id: int = DEFAULT_APP_ID, package: str = DEFAULT_PACKAGE
) -> dict[str, Any]:
    """The token service's answer for ``account``, shaped as protocol.md 8.1 (ids as strings)."""
    return {
        "code": 200,
        "message": "success",
        "data": {
            "appId": str(app_id),
            "appPackage": package,
            "appAccount": account.app_account,
            "miChid": 9,
            "miUserId": str(account.uuid),
            "miUserSecurityKey": account.security_key_b64,
            "token": account.token,
            "feDomainName": "memory",
        },
    }


@dataclass
class _Stored:
    delivery: Delivery
    uuid: int


@dataclass
class MemoryHub:
    """An in-memory server for several ``SessionPair``s (see the module docstring)."""

    app_id: int = DEFAULT_APP_ID
    package: str = DEFAULT_PACKAGE
    clock: ManualClock = field(default_factory=ManualClock)
    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    pairs: list[SessionPair] = field(default_factory=list)
    topics: dict[int, set[str]] = field(default_factory=dict)
    uc_members: dict[int, list[SessionPair]] = field(default_factory=dict)
    stored: dict[str, list[Delivery]] = field(default_factory=dict)
    acked: dict[tuple[int, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sequences = itertools.count(1)
        self._uc_sequences: dict[int, itertools.count[int]] = {}
        self._server_ids = CounterIdFactory("srv", self.clock.ms)

    # ------------------------------------------------------------------ setup

    def add_account(self, app_account: str, *, security_key_b64: str | None = None) -> FakeAccount:
        """Register an account (idempotent); the key defaults to a fake derived from the name."""
        if app_account in self.accounts:
            return self.accounts[app_account]
        uuid = 20000000000000001 + len(self.accounts)
        key = security_key_b64 or base64.b64encode(f"FAKEKEY-{app_account}".encode()).decode()
        account = FakeAccount(
            app_account=app_account, uuid=uuid, security_key_b64=key, token=f"TOKEN-{uuid}"
        )
        self.accounts[app_account] = account
        return account

    def create_topic(self, topic_id: int, members: set[str]) -> None:
        """A normal group (P2T) with these member accounts."""
        self.topics[topic_id] = set(members)

    def connect(
        self,
        app_account: str,
        *,
        resource: str | None = None,
        login: bool = True,
        answer: Any = None,
        **client_options: Any,
    ) -> SessionPair:
        """Make a client for ``app_account`` (registering it), join it to a new server session.

        With ``login`` the client logs in with ``answer`` (default: the right token answer)
        and the hub pumps until the BIND result arrived.
        """
        account = self.add_account(app_account)
        client = ClientSession(
            self.app_id,
            app_account,
            resource or f"res-{app_account}-{len(self.pairs) + 1}",
            ids=WebIdFactory(self.clock.ms),
            **client_options,
        )
        server = ServerSession(ids=self._server_ids, clock_ms=self.clock.ms)
        pair = SessionPair(client, server, clock=self.clock, on_server_event=self._handle)
        self.pairs.append(pair)
        if login:
            pair.client.login(
                answer if answer is not None else self.token_for(account), self.clock.now
            )
            self.pump()
        return pair

    def token_for(self, account: FakeAccount) -> dict[str, Any]:
        return token_answer(account, app_id=self.app_id, package=self.package)

    # ------------------------------------------------------------------ running

    def pump(self) -> None:
        """Carry frames between every pair until the whole hub is quiet."""
        for _ in range(MAX_ROUNDS):
            moved = False
            for pair in list(self.pairs):
                moved = pair.step() or moved
            if not moved:
                return
        raise RuntimeError(f"MemoryHub did not settle in {MAX_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """Move the clock, fire every due timer, pump."""
        self.clock.advance(seconds)
        for pair in self.pairs:
            deadline = pair.client.next_deadline()
            if deadline is not None and deadline <= self.clock.now:
                pair.client.expire(self.clock.now)
        self.pump()

    def bound(self, app_account: str) -> list[SessionPair]:
        """The open pairs whose server session is bound to ``app_account``."""
        account = self.accounts.get(app_account)
        if account is None:
            return []
        return [
            p
            for p in self.pairs
            if not p.closed and p.server.is_bound and p.server.uuid == account.uuid
        ]

    def notify_backlog(self, app_account: str, min_sequence: int, max_sequence: int) -> None:
        """Send a pull notification (6.10) to every session of ``app_account``."""
        for pair in self.bound(app_account):
            pair.server.notify_backlog(min_sequence, max_sequence)
        self.pump()

    def dismiss_uc(self, topic_id: int) -> None:
        """Dismiss an unlimited group: DISMISS to every member session (6.12)."""
        for pair in self.uc_members.pop(topic_id, []):
            if not pair.closed:
                pair.server.uc_dismiss(topic_id)
        self.pump()

    # ------------------------------------------------------------------ business logic

    def _handle(self, pair: SessionPair, event: ServerEvent) -> None:
        server = pair.server
        match event:
            case BindRequested(token=token, uuid=uuid):
                account = next((a for a in self.accounts.values() if a.token == token), None)
                if account is None or account.uuid != uuid:
                    server.reject_bind("auto", "invalid-token", "unknown token")
                    return
                server.accept_bind(
                    account.security_key_b64,
                    app_id=self.app_id,
                    package=self.package,
                    app_account=account.app_account,
                )
            case P2PReceived():
                sequence = next(self._sequences)
                timestamp = self.clock.ms()
                server.ack_packet(event.packet_id, sequence=sequence, timestamp=timestamp)
                target = self.accounts.get(event.to_account)
                if target is None:
                    return
                item = delivery_of(
                    event, sequence=sequence, timestamp=timestamp, to_uuid=target.uuid
                )
                self._route(target.app_account, item)
            case P2TReceived():
                timestamp = self.clock.ms()
                server.ack_packet(
                    event.packet_id, sequence=next(self._sequences), timestamp=timestamp
                )
                for member in sorted(self.topics.get(event.topic_id, set())):
                    if member == event.sender.app_account:
                        continue
                    item = delivery_of(event, sequence=next(self._sequences), timestamp=timestamp)
                    self._route(member, item)
            case SequenceAcked(sequence=sequence):
                key = (server.uuid or 0, server.resource or "")
                self.acked[key] = max(self.acked.get(key, 0), sequence)
            case PullRequested():
                owner = server.app_account or ""
                after = self.acked.get((server.uuid or 0, server.resource or ""), 0)
                pending = [d for d in self.stored.get(owner, []) if d.sequence > after]
                if pending:
                    server.deliver(pending, max_sequence=pending[-1].sequence)
            case UCJoinRequested(topic_id=topic_id):
                members = self.uc_members.setdefault(topic_id, [])
                if pair not in members:
                    members.append(pair)
                server.uc_join_result(topic_id)
            case UCQuitRequested(topic_id=topic_id):
                members = self.uc_members.get(topic_id, [])
                if pair in members:
                    members.remove(pair)
                    server.uc_quit_result(topic_id)
                else:
                    server.uc_quit_result(topic_id, code=1, message="not a member")
            case UCMessageReceived():
                counter = self._uc_sequences.setdefault(event.topic_id, itertools.count(1))
                uc_item = UCDelivery(
                    packet_id=PacketId(event.message_id),
                    sequence=next(counter),
                    timestamp=self.clock.ms(),
                    sender=event.sender,
                    payload=event.payload,
                    is_store=event.is_store,
                    biz_type=event.biz_type,
                )
                for other in self.uc_members.get(event.topic_id, []):
                    if other is not pair and not other.closed:
                        other.server.deliver_uc(
                            event.topic_id, [uc_item], max_sequence=uc_item.sequence
                        )
            case UCPinged():
                server.uc_pong()
            case _:
                pass

    def _route(self, app_account: str, item: Delivery) -> None:
        if item.is_store:
            self.stored.setdefault(app_account, []).append(item)
        for target in self.bound(app_account):
            target.server.deliver([item], max_sequence=item.sequence)
