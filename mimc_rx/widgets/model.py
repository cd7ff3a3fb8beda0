"""The chat panel's view-model: conversations, messages and connection state, with no widgets.

``ChatModel`` is plain Python state that the ipywidgets view (``ChatPanel``) renders. Keeping it
apart means every rule of the panel (which conversation a message belongs to, when unread counts
grow and reset, how an own message goes from pending to acked or failed, what the status line
says) is tested without a kernel or a browser.

Theory of operation:

* A conversation is either a P2P account or a group (topic id): ``ConversationId``.
  Conversations keep the order in which they first appeared, so a click in the list never lands
  on a row that moved under the pointer.
* Every conversation holds at most ``max_messages`` entries (oldest dropped first) and the model
  holds at most ``max_conversations`` conversations (the least recently active one that is not
  selected is dropped first), so a long-running panel has bounded memory.
* An own message starts ``PENDING`` under the packet id that the send returned. The server ack
  (``ServerAck``) turns it ``ACKED`` with the sequence, or ``FAILED`` with the ack's error;
  the panel may also fail it after a timeout. A message that could not even be sent (the send
  raised) is recorded ``FAILED`` at once.
* The same packet id of the same sender never appears twice in a conversation (packet ids
  are unique per sender only): a delivery of our own group message
  (or a P2P message to ourselves) updates the entry instead of adding one.
* ``version`` grows on every change, so a view can skip work when nothing changed.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from enum import Enum

from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck, StatusChange

__all__ = [
    "ChatEntry",
    "ChatModel",
    "ConnectionState",
    "ConnectionStatus",
    "ConversationId",
    "ConversationKind",
    "ConversationSummary",
    "MessageState",
]

_EARLY_ACKS = 64
"""How many unmatched acks the model remembers (see ``ChatModel.apply_ack``)."""

_frozen = {"frozen": True, "slots": True, "kw_only": True}


class ConversationKind(Enum):
    """Whom a conversation is with: one account, or a group (topic)."""

    P2P = "p2p"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class ConversationId:
    """A conversation's identity: an account name or a topic id.

    Build one with ``ConversationId.p2p("bob")`` or ``ConversationId.group(123)``.
    """

    kind: ConversationKind
    target: str

    @classmethod
    def p2p(cls, account: str) -> ConversationId:
        """The conversation with one account."""
        if not account:
            raise ValueError("an account name must not be empty")
        return cls(ConversationKind.P2P, account)

    @classmethod
    def group(cls, topic_id: int) -> ConversationId:
        """The conversation of a group (topic)."""
        return cls(ConversationKind.GROUP, str(int(topic_id)))

    @property
    def is_group(self) -> bool:
        """True for a group conversation."""
        return self.kind is ConversationKind.GROUP

    @property
    def topic_id(self) -> int:
        """The topic id of a group conversation (``ValueError`` for a P2P one)."""
        if not self.is_group:
            raise ValueError(f"{self.target!r} is an account, not a topic")
        return int(self.target)

    @property
    def label(self) -> str:
        """How the conversation list names it."""
        return f"# {self.target}" if self.is_group else self.target


class MessageState(Enum):
    """Where a message of the view stands."""

    RECEIVED = "received"
    """Someone else's message, delivered to us."""
    PENDING = "pending"
    """Our message, sent, waiting for the server ack."""
    ACKED = "acked"
    """Our message, accepted by the server (it has a sequence)."""
    FAILED = "failed"
    """Our message, refused by the server, timed out, or not sent at all."""


@dataclass(**_frozen)
class ChatEntry:
    """One line of the message view."""

    conversation: ConversationId
    sender: str
    text: str
    timestamp: int
    """Milliseconds since the epoch: the server's time when known, else the local send time."""
    state: MessageState
    packet_id: PacketId | None = None
    sequence: int | None = None
    error: str = ""

    @property
    def outgoing(self) -> bool:
        """True for our own messages (pending, acked or failed)."""
        return self.state is not MessageState.RECEIVED


@dataclass(**_frozen)
class ConversationSummary:
    """One row of the conversation list."""

    id: ConversationId
    unread: int
    last: ChatEntry | None
    name: str | None = None
    """A group's name, when known (``ChatModel.name_group``)."""

    @property
    def label(self) -> str:
        """The row's text: the name, with the unread count when there is one."""
        base = f"# {self.name}" if self.name and self.id.is_group else self.id.label
        return f"{base} ({self.unread})" if self.unread else base


class ConnectionState(Enum):
    """The connection as the status indicator shows it."""

    CONNECTING = "connecting"
    """No status seen yet (before login)."""
    ONLINE = "online"
    OFFLINE = "offline"
    """Logged out, or the login failed (``detail`` says why)."""
    DISCONNECTED = "disconnected"
    """The connection dropped (``detail`` has the reason); a reconnect may follow."""


@dataclass(**_frozen)
class ConnectionStatus:
    """What the status indicator shows."""

    state: ConnectionState
    detail: str = ""
    disconnects: int = 0
    """How many disconnects the panel has seen."""
    reconnects: int = 0
    """How many times the user came back online after a disconnect."""

    @property
    def text(self) -> str:
        """A one-line human summary."""
        words = self.state.value
        if self.detail:
            words += f": {self.detail}"
        if self.reconnects:
            words += f" (reconnected {self.reconnects}x)"
        return words


@dataclass
class _Conversation:
    id: ConversationId
    messages: deque[ChatEntry]
    unread: int = 0
    active_at: int = 0


class ChatModel:
    """Everything the chat panel shows, as plain state.

    Args:
        me: our own account name (``user.app_account``), to recognise our own messages that
            come back from the server (another resource of ours, or a group echo).
        max_messages: history kept per conversation.
        max_conversations: conversations kept in the list.
    """

    def __init__(self, me: str, *, max_messages: int = 500, max_conversations: int = 100) -> None:
        if max_messages < 1 or max_conversations < 1:
            raise ValueError("max_messages and max_conversations must be at least 1")
        self.me = me
        self.max_messages = max_messages
        self.max_conversations = max_conversations
        self._conversations: dict[ConversationId, _Conversation] = {}
        self._pending: dict[PacketId, ConversationId] = {}
        # Acks that overtook the send call's return (a subscriber on another thread, or a
        # synchronous fake): kept briefly, bounded, and applied when the send is recorded.
        self._early_acks: OrderedDict[PacketId, ServerAck] = OrderedDict()
        self._selected: ConversationId | None = None
        self._status = ConnectionStatus(state=ConnectionState.CONNECTING)
        self._clock = itertools.count(1)
        self._group_names: dict[str, str] = {}
        self.version = 0

    # ------------------------------------------------------------------ reading

    @property
    def selected(self) -> ConversationId | None:
        """The conversation the message view shows, if any."""
        return self._selected

    @property
    def status(self) -> ConnectionStatus:
        """The connection status to show."""
        return self._status

    @property
    def conversations(self) -> tuple[ConversationSummary, ...]:
        """The conversation list, in the order the conversations first appeared."""
        return tuple(
            ConversationSummary(
                id=c.id,
                unread=c.unread,
                last=c.messages[-1] if c.messages else None,
                name=self._group_names.get(c.id.target) if c.id.is_group else None,
            )
            for c in self._conversations.values()
        )

    def group_name(self, conversation: ConversationId | None) -> str | None:
        """The name of a group conversation, when known."""
        if conversation is None or not conversation.is_group:
            return None
        return self._group_names.get(conversation.target)

    def name_group(self, topic_id: int, name: str) -> None:
        """Show group ``topic_id`` by ``name`` instead of its raw id."""
        key = str(int(topic_id))
        if self._group_names.get(key) != name:
            self._group_names[key] = name
            self._changed()

    def messages(self, conversation: ConversationId | None = None) -> tuple[ChatEntry, ...]:
        """The kept history of a conversation (default: the selected one), oldest first."""
        key = self._selected if conversation is None else conversation
        found = self._conversations.get(key) if key is not None else None
        return tuple(found.messages) if found is not None else ()

    def unread(self, conversation: ConversationId) -> int:
        """The unread count of a conversation (0 when unknown)."""
        found = self._conversations.get(conversation)
        return found.unread if found is not None else 0

    @property
    def total_unread(self) -> int:
        """Unread messages over all conversations."""
        return sum(c.unread for c in self._conversations.values())

    @property
    def pending(self) -> frozenset[PacketId]:
        """Packet ids of own messages still waiting for their ack."""
        return frozenset(self._pending)

    # ------------------------------------------------------------------ conversations

    def open(self, conversation: ConversationId) -> None:
        """Start (or go back to) a conversation and select it."""
        self._ensure(conversation)
        self.select(conversation)

    def select(self, conversation: ConversationId | None) -> None:
        """Show a conversation in the message view; its unread count goes back to zero."""
        if conversation is not None:
            found = self._ensure(conversation)
            found.unread = 0
        self._selected = conversation
        self._changed()

    # ------------------------------------------------------------------ incoming

    def receive(self, message: P2PMessage | P2TMessage) -> ConversationId:
        """Record a delivered message in its conversation and return that conversation.

        A P2P message from another account goes to that account's conversation; one from our
        own account (sent by another resource of ours) goes to the recipient's. A message whose
        packet id is already in the conversation (our own, echoed back) updates that entry.
        """
        own = message.from_account == self.me
        if isinstance(message, P2TMessage):
            key = ConversationId.group(message.topic_id)
        elif own:
            key = ConversationId.p2p(message.to_account or self.me)
        else:
            key = ConversationId.p2p(message.from_account)
        conversation = self._ensure(key)
        state = MessageState.ACKED if own else MessageState.RECEIVED
        entry = ChatEntry(
            conversation=key,
            sender=message.from_account,
            text=message.text,
            timestamp=message.timestamp,
            state=state,
            packet_id=message.packet_id,
            sequence=message.sequence,
        )
        index = self._find(conversation, message.packet_id, message.from_account)
        if index is not None:
            old = conversation.messages[index]
            if old.outgoing:
                # Our own message came back (a group echo): it reached the server for sure.
                self._pending.pop(message.packet_id, None)
                conversation.messages[index] = replace(
                    old, state=MessageState.ACKED, sequence=message.sequence, error=""
                )
                self._changed()
            return key
        self._append(conversation, entry)
        if not own and key != self._selected:
            conversation.unread += 1
        self._changed()
        return key

    # ------------------------------------------------------------------ outgoing

    def add_outgoing(
        self, conversation: ConversationId, text: str, packet_id: PacketId, *, now_ms: int
    ) -> ChatEntry:
        """Record an own message just sent under ``packet_id``; it is pending until acked.

        Idempotent: the same send may be told twice (the panel's own call, and the user's
        ``sent_messages`` stream); the second time returns the entry already recorded.
        """
        found = self._conversations.get(conversation)
        index = self._find(found, packet_id, self.me) if found is not None else None
        if found is not None and index is not None:
            return found.messages[index]
        entry = ChatEntry(
            conversation=conversation,
            sender=self.me,
            text=text,
            timestamp=now_ms,
            state=MessageState.PENDING,
            packet_id=packet_id,
        )
        self._append(self._ensure(conversation), entry)
        self._pending[packet_id] = conversation
        self._changed()
        early = self._early_acks.pop(packet_id, None)
        if early is not None:
            self.apply_ack(early)
        return entry

    def record_sent(self, message: P2PMessage | P2TMessage, *, now_ms: int) -> ChatEntry:
        """An own message sent elsewhere (from code, not the panel): pending until acked."""
        if isinstance(message, P2TMessage):
            key = ConversationId.group(message.topic_id)
        else:
            key = ConversationId.p2p(message.to_account)
        return self.add_outgoing(key, message.text, message.packet_id, now_ms=now_ms)

    def add_failed(
        self, conversation: ConversationId, text: str, error: str, *, now_ms: int
    ) -> ChatEntry:
        """Record an own message whose send raised (nothing went out)."""
        entry = ChatEntry(
            conversation=conversation,
            sender=self.me,
            text=text,
            timestamp=now_ms,
            state=MessageState.FAILED,
            error=error,
        )
        self._append(self._ensure(conversation), entry)
        self._changed()
        return entry

    def apply_ack(self, ack: ServerAck) -> bool:
        """Apply a server ack to the pending message it names.

        Returns:
            False when no pending message of this model has that packet id (a send made
            elsewhere, an evicted message, or an ack already applied). Such an ack is kept
            for a while (``_EARLY_ACKS`` of them) in case its send is recorded just after.
        """
        key = self._pending.pop(ack.packet_id, None)
        if key is None:
            self._early_acks[ack.packet_id] = ack
            while len(self._early_acks) > _EARLY_ACKS:
                self._early_acks.popitem(last=False)
            return False
        if ack.ok:
            return self._update(
                key,
                ack.packet_id,
                state=MessageState.ACKED,
                sequence=ack.sequence,
                timestamp=ack.timestamp or None,
            )
        return self._update(key, ack.packet_id, state=MessageState.FAILED, error=ack.err_msg)

    def fail(self, packet_id: PacketId, error: str) -> bool:
        """Mark a pending message failed (no ack in time). False when it is not pending."""
        key = self._pending.pop(packet_id, None)
        if key is None:
            return False
        return self._update(key, packet_id, state=MessageState.FAILED, error=error)

    # ------------------------------------------------------------------ connection

    def apply_status(self, status: StatusChange) -> None:
        """Follow ``user.status``."""
        current = self._status
        if status.online:
            came_back = current.state is ConnectionState.DISCONNECTED
            self._status = replace(
                current,
                state=ConnectionState.ONLINE,
                detail="",
                reconnects=current.reconnects + (1 if came_back else 0),
            )
        else:
            why = "/".join(p for p in (status.err_type, status.err_reason) if p)
            if status.err_desc:
                why = f"{why} ({status.err_desc})" if why else status.err_desc
            if current.state is ConnectionState.DISCONNECTED and not why:
                return  # the offline status that follows a disconnect adds nothing
            self._status = replace(current, state=ConnectionState.OFFLINE, detail=why)
        self._changed()

    def apply_disconnect(self, reason: str) -> None:
        """Follow ``user.disconnects``."""
        current = self._status
        self._status = replace(
            current,
            state=ConnectionState.DISCONNECTED,
            detail=reason,
            disconnects=current.disconnects + 1,
        )
        self._changed()

    # ------------------------------------------------------------------ internals

    def _changed(self) -> None:
        self.version += 1

    def _ensure(self, key: ConversationId) -> _Conversation:
        found = self._conversations.get(key)
        if found is None:
            found = _Conversation(id=key, messages=deque(maxlen=self.max_messages))
            self._conversations[key] = found
        found.active_at = next(self._clock)
        self._evict(keep=key)
        return found

    def _evict(self, *, keep: ConversationId) -> None:
        while len(self._conversations) > self.max_conversations:
            victims = [
                c for c in self._conversations.values() if c.id not in (keep, self._selected)
            ]
            if not victims:  # only `keep` and the selected one are left: the selection goes
                victims = [c for c in self._conversations.values() if c.id != keep]
            oldest = min(victims, key=lambda c: c.active_at)
            del self._conversations[oldest.id]
            if oldest.id == self._selected:
                self._selected = None
            for entry in oldest.messages:
                if entry.packet_id is not None and self._pending.get(entry.packet_id) == oldest.id:
                    del self._pending[entry.packet_id]

    def _append(self, conversation: _Conversation, entry: ChatEntry) -> None:
        messages = conversation.messages
        if len(messages) == messages.maxlen:
            dropped = messages[0]
            if dropped.packet_id is not None and dropped.state is MessageState.PENDING:
                self._pending.pop(dropped.packet_id, None)
        messages.append(entry)
        conversation.active_at = next(self._clock)

    @staticmethod
    def _find(conversation: _Conversation, packet_id: PacketId, sender: str) -> int | None:
        # A packet id is unique per sender only: two web clients that send in the same
        # millisecond with the same counter make the same id (docs/protocol.md 6.2).
        messages = conversation.messages
        # Newest first: acks and echoes concern recent messages.
        for index in range(len(messages) - 1, -1, -1):
            entry = messages[index]
            if entry.packet_id == packet_id and entry.sender == sender:
                return index
        return None

    def _update(
        self,
        key: ConversationId,
        packet_id: PacketId,
        *,
        state: MessageState,
        sequence: int | None = None,
        error: str = "",
        timestamp: int | None = None,
    ) -> bool:
        conversation = self._conversations.get(key)
        index = self._find(conversation, packet_id, self.me) if conversation is not None else None
        if conversation is None or index is None:
            return False
        old = conversation.messages[index]
        conversation.messages[index] = replace(
            old,
            state=state,
            sequence=sequence if sequence is not None else old.sequence,
            error=error,
            timestamp=timestamp if timestamp is not None else old.timestamp,
        )
        self._changed()
        return True
