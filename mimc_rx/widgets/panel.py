"""``ChatPanel``: a small chat UI for one ``MIMCUser``, made of ipywidgets.

The panel subscribes to the user's streams, feeds a ``ChatModel`` and renders the model into
widget values. It never writes through ``with output:`` (after an ``await`` that loses its
parent message in ipywidgets 8); every update is a trait change that the widget comm carries
to the browser, whichever thread or loop callback it happens on.

The panel shows the whole conversation, whoever sent it: own messages sent from code
(``alice.send_message(...)``) come in on the user's ``sent_messages`` stream and show pending
until their ack, like the ones typed here.

Enter sends exactly what the box shows. The text box's value reaches the kernel through
ipywidgets' state sync, which the front end holds back while the kernel is busy, while the
Enter key is a custom message sent at once: fast typing then Enter could send the text without
its last keystrokes. So the panel waits until the value has settled (``submit_settle``
seconds with no value change after the Enter) before it sends.

In a notebook the panel is kept by ``mimc_rx.jupyter``: running its cell again closes the
panel the last run made, so there is one panel (and one set of subscriptions) per cell.

Rendering is coalesced: a burst of messages triggers one render per ``render_interval`` on the
panel's scheduler (by default the asyncio loop that is running when the panel is built, which
in a notebook is the kernel's). Without a scheduler the panel renders after every change, which
is what the unit tests use. Own messages that get no ack within ``ack_timeout`` are marked
failed, on the same scheduler.

ipywidgets is imported when a panel is built, never when ``mimc_rx`` is imported.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from reactivex import Observable
from reactivex.abc import DisposableBase, SchedulerBase
from reactivex.disposable import CompositeDisposable

from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck, StatusChange
from mimc_rx.widgets.model import ChatModel, ConversationId, ConversationKind
from mimc_rx.widgets.render import render_header, render_messages, render_status

__all__ = ["ChatPanel", "ChatUser"]

log = logging.getLogger(__name__)


class ChatUser(Protocol):
    """What the panel needs from a user: ``MIMCUser`` has it, and so can a test fake."""

    @property
    def app_account(self) -> str: ...
    @property
    def status(self) -> Observable[StatusChange]: ...
    @property
    def server_acks(self) -> Observable[ServerAck]: ...
    @property
    def p2p_messages(self) -> Observable[P2PMessage]: ...
    @property
    def group_messages(self) -> Observable[P2TMessage]: ...
    @property
    def disconnects(self) -> Observable[Any]: ...
    def send_message(self, to: str, text: str, /) -> PacketId: ...
    def send_group_message(self, topic_id: int, text: str, /) -> PacketId: ...


def _default_scheduler(user: object) -> SchedulerBase | None:
    own = getattr(user, "scheduler", None)
    if isinstance(own, SchedulerBase):
        return own
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

    return AsyncIOThreadSafeScheduler(loop)


class ChatPanel:
    """A chat UI for one user: conversations, messages, a text box and a status badge.

    Build it after creating the user (before or after login) and display it; it follows the
    user until ``close()``. Only the user's public streams and send methods drive it.

    Args:
        user: a ``MIMCUser`` (or anything with the same streams and send methods).
        max_messages: history kept per conversation.
        max_conversations: conversations kept in the list.
        ack_timeout: seconds after which an unacknowledged own message is marked failed;
            ``None`` to wait forever. Needs a scheduler.
        render_interval: seconds over which bursts of changes are coalesced into one render;
            0 renders at every change. Needs a scheduler.
        scheduler: where timers run. Default: the user's ``scheduler`` attribute if it has
            one, else the running asyncio loop, else none (immediate renders, no timeouts).
        height: CSS height of the message view.
        clock: wall clock in seconds, for the time shown on own messages before their ack.
        submit_settle: seconds without a change of the text box's value, after Enter, before
            the text is sent (see the module docstring). Needs a scheduler.
        group_names: names to show for groups, by topic id; the groups the user created
            (``user.group_names``) are named by themselves.

    Attributes:
        model: the ``ChatModel`` behind the view.
        widget: the root widget (what the notebook displays).
        text, send_button, conversation_list, new_kind, new_target, open_button,
        status_view, header_view, message_view, hint_view: the parts, for tests and tweaks.
    """

    def __init__(
        self,
        user: ChatUser,
        *,
        max_messages: int = 500,
        max_conversations: int = 100,
        ack_timeout: float | None = 30.0,
        render_interval: float = 0.05,
        scheduler: SchedulerBase | None = None,
        height: str = "320px",
        clock: Callable[[], float] = time.time,
        submit_settle: float = 0.15,
        group_names: Mapping[int, str] | None = None,
    ) -> None:
        from mimc_rx._extras import require_extra

        require_extra("notebook", "ChatPanel")
        import ipywidgets as w

        self.user = user
        self.model = ChatModel(
            user.app_account, max_messages=max_messages, max_conversations=max_conversations
        )
        self._ack_timeout = ack_timeout
        self._render_interval = render_interval
        self._scheduler = scheduler if scheduler is not None else _default_scheduler(user)
        self._height = height
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self._syncing = False
        self._rendered_version = -1
        self._render_timer: DisposableBase | None = None
        self._timers: dict[PacketId, DisposableBase] = {}
        self._submit_settle = submit_settle
        self._submit_timer: DisposableBase | None = None
        for topic_id, name in (group_names or {}).items():
            self.model.name_group(topic_id, name)

        self.status_view = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.conversation_list = w.Select(
            options=[], rows=8, layout=w.Layout(width="auto", height="auto", flex="1 1 auto")
        )
        self.new_kind = w.Dropdown(
            options=[("account", ConversationKind.P2P), ("topic id", ConversationKind.GROUP)],
            value=ConversationKind.P2P,
            layout=w.Layout(width="96px"),
        )
        self.new_target = w.Text(placeholder="bob or 12345", layout=w.Layout(width="136px"))
        self.open_button = w.Button(
            description="Open",
            tooltip="Start or go back to this conversation",
            layout=w.Layout(width="auto"),
        )
        self.hint_view = w.HTML()
        self.header_view = w.HTML()
        self.message_view = w.HTML()
        self.text = w.Text(
            placeholder="Type a message, Enter sends",
            continuous_update=True,
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.send_button = w.Button(
            description="Send",
            button_style="primary",
            icon="paper-plane",
            layout=w.Layout(width="90px"),
        )

        left = w.VBox(
            [
                w.HTML("<b>Conversations</b>"),
                self.conversation_list,
                w.HTML("<b>New conversation</b>"),
                w.HBox([self.new_kind, self.new_target]),
                self.open_button,
                self.hint_view,
            ],
            layout=w.Layout(width="248px", min_width="248px", margin="0 8px 0 0"),
        )
        right = w.VBox(
            [self.header_view, self.message_view, w.HBox([self.text, self.send_button])],
            layout=w.Layout(flex="1 1 auto", min_width="280px"),
        )
        self.widget = w.VBox(
            [
                w.HBox([self.status_view, w.HTML(_STYLE, layout=w.Layout(display="none"))]),
                w.HBox([left, right], layout=w.Layout(width="100%")),
            ],
            layout=w.Layout(
                border="1px solid var(--jp-border-color1, #ccc)",
                padding="8px",
                width="100%",
                max_width="960px",
            ),
        )
        # Stable class names: the browser test (and user CSS) finds the parts by them.
        self.widget.add_class("mimc-chat-panel")
        self.conversation_list.add_class("mimc-conversations")
        self.new_target.add_class("mimc-new-target")
        self.open_button.add_class("mimc-open")
        self.message_view.add_class("mimc-message-view")
        self.text.add_class("mimc-input")
        self.send_button.add_class("mimc-send")
        self._children = _descendants(self.widget)

        self.send_button.on_click(lambda _button: self.send())
        self.text.on_msg(self._on_text_message)
        self.text.observe(self._on_text_value, names="value")
        self.open_button.on_click(lambda _button: self._open_from_form())
        self.new_target.on_msg(self._on_new_target_message)
        self.conversation_list.observe(self._on_pick, names="index")

        self._subscriptions = CompositeDisposable()
        streams: list[tuple[Observable[Any], Callable[[Any], None]]] = [
            (user.status, self._on_status),
            (user.server_acks, self._on_ack),
            (user.p2p_messages, self._on_message),
            (user.group_messages, self._on_message),
            (user.disconnects, self._on_disconnect),
        ]
        sent = getattr(user, "sent_messages", None)
        if sent is not None:  # MIMCUser has it; a minimal ChatUser need not
            streams.append((sent, self._on_sent))
        try:
            for stream, handler in streams:
                self._subscriptions.add(
                    stream.subscribe(
                        on_next=self._guard(handler), on_error=self._guard(self._on_stream_error)
                    )
                )
        except BaseException:
            self.close()
            raise
        self._sync_group_names()
        self._render()  # now, so the first display already shows the replayed status
        self._keep_in_notebook()

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def open_conversation(self, account: str) -> None:
        """Start (or go back to) the P2P conversation with ``account`` and select it."""
        self._change(lambda: self.model.open(ConversationId.p2p(account)))

    def open_group(self, topic_id: int) -> None:
        """Start (or go back to) the conversation of group ``topic_id`` and select it."""
        self._change(lambda: self.model.open(ConversationId.group(topic_id)))

    def name_group(self, topic_id: int, name: str) -> None:
        """Show group ``topic_id`` as ``name`` in the list and the header."""
        self._change(lambda: self.model.name_group(topic_id, name))

    def send(self, text: str | None = None) -> PacketId | None:
        """Send to the selected conversation: ``text``, or the text box's content (then cleared).

        Returns:
            The packet id, or None when nothing went out (empty text, no conversation
            selected, or the send raised: that message is then shown failed with the error).
        """
        with self._lock:
            if self._closed:
                return None
            body = self.text.value if text is None else text
            if not body.strip():
                return None
            conversation = self.model.selected
            if conversation is None:
                self.hint_view.value = _hint("Pick or open a conversation first.")
                return None
            if text is None:
                self.text.value = ""
            self.hint_view.value = ""
        now_ms = int(self._clock() * 1000)
        # The send runs without the panel's lock: a blocking user (SyncMIMCUser) waits for its
        # loop thread, which may be delivering to this panel right now. An ack that overtakes
        # this call is kept by the model until the message is recorded below.
        packet_id: PacketId | None
        try:
            if conversation.is_group:
                packet_id = self.user.send_group_message(conversation.topic_id, body)
            else:
                packet_id = self.user.send_message(conversation.target, body)
        except Exception as exc:  # any refusal (not logged in, too large...) is shown, not raised
            packet_id = None
            error = str(exc) or type(exc).__name__
            self._change(lambda: self.model.add_failed(conversation, body, error, now_ms=now_ms))
        else:
            sent = packet_id
            self._change(lambda: self.model.add_outgoing(conversation, body, sent, now_ms=now_ms))
            with self._lock:
                self._start_ack_timer(sent)
        return packet_id

    def close(self) -> None:
        """Dispose the subscriptions and timers and close the widgets. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timers = [*self._timers.values(), self._render_timer, self._submit_timer]
            self._timers.clear()
            self._render_timer = None
        self._subscriptions.dispose()
        for timer in timers:
            if timer is not None:
                timer.dispose()
        for child in self._children:
            child.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            # Where widgets do not render (a saved notebook on GitHub), say what this is.
            bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        model = self.model
        state = "closed" if self._closed else model.status.state.value
        return (
            f"<ChatPanel {model.me!r}: {state}, {len(model.conversations)} conversations, "
            f"{model.total_unread} unread>"
        )

    # ------------------------------------------------------------------ stream handlers

    def _guard(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        # A failing render must never reach (and break) the user's streams.
        def guarded(value: Any) -> None:
            try:
                handler(value)
            except Exception:
                log.exception("ChatPanel: handling %r failed", value)

        return guarded

    def _on_status(self, status: StatusChange) -> None:
        self._change(lambda: self.model.apply_status(status))

    def _on_disconnect(self, event: Any) -> None:
        # MIMCUser publishes a Disconnected(reason, detail, code, will_reconnect); read it loosely.
        reason = getattr(event, "reason", None)
        text = str(reason) if reason is not None else str(event)
        detail = getattr(event, "detail", "")
        if detail:
            text += f" ({detail})"
        if getattr(event, "will_reconnect", False):
            text += ", reconnecting"
        self._change(lambda: self.model.apply_disconnect(text))

    def _on_message(self, message: P2PMessage | P2TMessage) -> None:
        self._change(lambda: self.model.receive(message))

    def _on_sent(self, message: P2PMessage | P2TMessage) -> None:
        # A send made anywhere (this panel's own sends are told here too; the model keeps
        # one entry per packet id).
        now_ms = int(self._clock() * 1000)
        self._change(lambda: self.model.record_sent(message, now_ms=now_ms))
        with self._lock:
            if message.packet_id not in self._timers:
                self._start_ack_timer(message.packet_id)

    def _on_ack(self, ack: ServerAck) -> None:
        with self._lock:
            timer = self._timers.pop(ack.packet_id, None)
        if timer is not None:
            timer.dispose()
        self._change(lambda: self.model.apply_ack(ack))

    def _on_stream_error(self, error: Exception) -> None:
        status = StatusChange(online=False, err_type="stream error", err_reason=str(error))
        self._change(lambda: self.model.apply_status(status))

    # ------------------------------------------------------------------ widget handlers

    def _on_text_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        # The Text view sends {"event": "submit"} when Enter is pressed (on_submit is deprecated).
        if content.get("event") == "submit":
            self._submit_when_settled()

    def _submit_when_settled(self) -> None:
        """Send once the box's value has stopped changing (it may lag behind the Enter)."""
        with self._lock:
            if self._closed:
                return
            if self._scheduler is None or self._submit_settle <= 0:
                pending = False
            else:
                if self._submit_timer is not None:
                    self._submit_timer.dispose()
                self._submit_timer = self._scheduler.schedule_relative(
                    self._submit_settle, lambda _scheduler, _state: self._settled_submit()
                )
                pending = True
        if not pending:
            self.send()

    def _settled_submit(self) -> None:
        with self._lock:
            self._submit_timer = None
        try:
            self.send()
        except Exception:
            log.exception("ChatPanel: send failed")

    def _on_text_value(self, _change: dict[str, Any]) -> None:
        # A keystroke that arrives after the Enter restarts the wait.
        with self._lock:
            waiting = self._submit_timer is not None
        if waiting:
            self._submit_when_settled()

    def _on_new_target_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit":
            self._open_from_form()

    def _open_from_form(self) -> None:
        target = self.new_target.value.strip()
        if not target:
            self.hint_view.value = _hint("Type an account name or a topic id.")
            return
        if self.new_kind.value is ConversationKind.GROUP:
            try:
                topic_id = int(target)
            except ValueError:
                self.hint_view.value = _hint(f"A topic id is a number, not {target!r}.")
                return
            self.open_group(topic_id)
        else:
            self.open_conversation(target)
        self.new_target.value = ""
        self.hint_view.value = ""

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._syncing or self._closed:
            return
        index = change["new"]
        if index is None:
            return
        # The index points into the options the widget shows, which the model may have outgrown.
        options = self.conversation_list.options
        if 0 <= index < len(options):
            picked: ConversationId = options[index][1]
            self._change(lambda: self.model.select(picked))

    # ------------------------------------------------------------------ rendering

    def _change(self, mutate: Callable[[], object]) -> None:
        with self._lock:
            if self._closed:
                return
            mutate()
            self._sync_group_names()
        self._request_render()

    def _sync_group_names(self) -> None:
        """Take the names of the groups the user created since (``user.group_names``)."""
        names = getattr(self.user, "group_names", None)
        if isinstance(names, Mapping):
            for topic_id, name in names.items():
                self.model.name_group(topic_id, name)

    def _keep_in_notebook(self) -> None:
        """In a notebook, replace the panel an earlier run of this cell made."""
        from mimc_rx.jupyter import cell_key, keep

        if cell_key() is not None:
            keep(self)

    def _request_render(self) -> None:
        with self._lock:
            if self._closed or self._render_timer is not None:
                return
            if self._scheduler is None or self._render_interval <= 0:
                self._render()
                return
            self._render_timer = self._scheduler.schedule_relative(
                self._render_interval, lambda _scheduler, _state: self._timed_render()
            )

    def _timed_render(self) -> None:
        with self._lock:
            self._render_timer = None
            try:
                self._render()
            except Exception:
                log.exception("ChatPanel: render failed")

    def _render(self) -> None:
        with self._lock:
            if self._closed or self.model.version == self._rendered_version:
                return
            model = self.model
            self._rendered_version = model.version
            self.status_view.value = render_status(model.status, model.me)
            summaries = model.conversations
            options = tuple((s.label, s.id) for s in summaries)
            ids = [s.id for s in summaries]
            index = ids.index(model.selected) if model.selected in ids else None
            self._syncing = True
            try:
                if tuple(self.conversation_list.options) != options:
                    self.conversation_list.options = options
                if self.conversation_list.index != index:
                    self.conversation_list.index = index
            finally:
                self._syncing = False
            self.header_view.value = render_header(model.selected, model.group_name(model.selected))
            empty = (
                "Pick a conversation, or open one below."
                if model.selected is None
                else ("No messages yet.")
            )
            self.message_view.value = render_messages(
                model.messages(), height=self._height, empty=empty
            )
            no_target = model.selected is None
            self.text.disabled = no_target
            self.send_button.disabled = no_target

    def _start_ack_timer(self, packet_id: PacketId) -> None:
        if self._closed or self._scheduler is None or self._ack_timeout is None:
            return
        if packet_id in self._timers:  # told by both send() and sent_messages
            return
        timeout = self._ack_timeout

        def expire(_scheduler: SchedulerBase, _state: object) -> None:
            with self._lock:
                self._timers.pop(packet_id, None)
            self._change(lambda: self.model.fail(packet_id, f"no server ack within {timeout:g} s"))

        if packet_id in self.model.pending:
            self._timers[packet_id] = self._scheduler.schedule_relative(timeout, expire)


_STYLE = """<style>
.mimc-chat-panel .mimc-conversations { height: 100%; }
.mimc-chat-panel .mimc-conversations select { height: 100%; min-height: 96px; }
</style>"""
"""Lets the conversation list fill its column (a Select's height is its ``rows`` otherwise)."""


def _descendants(root: Any) -> list[Any]:
    """The root widget and every widget inside it, children first (the order to close them)."""
    found: list[Any] = []
    for child in getattr(root, "children", ()):
        found.extend(_descendants(child))
    found.append(root)
    return found


def _hint(text: str) -> str:
    return (
        '<span style="color:var(--jp-error-color1,#c62828);font-size:12px;">'
        f"{html.escape(text)}</span>"
    )
