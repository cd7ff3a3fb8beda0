"""ChatPanel and its view-model, without a kernel: a fake user made of Subjects drives them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from reactivex import Observable
from reactivex.subject import BehaviorSubject, Subject
from reactivex.testing import TestScheduler

from mimc_rx.client.values import Disconnected, DisconnectReason
from mimc_rx.errors import NotLoggedIn
from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck, StatusChange
from mimc_rx.widgets import (
    ChatModel,
    ChatPanel,
    ConnectionState,
    ConversationId,
    MessageState,
)
from mimc_rx.widgets.render import render_messages

pytest.importorskip("ipywidgets")

TIMEOUT = 5.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Seconds a helper thread may take; scale with MIMC_TEST_TIMEOUT_SCALE."""

BOB = ConversationId.p2p("bob")
GROUP = ConversationId.group(7)
T0 = 1_700_000_000_000


class FakeUser:
    """The public surface of MIMCUser that the panel uses, made of Subjects; sends are recorded."""

    def __init__(self, account: str = "alice") -> None:
        self.app_account = account
        self.status_subject = BehaviorSubject(StatusChange(online=False))
        self.acks = Subject[ServerAck]()
        self.p2p = Subject[P2PMessage]()
        self.groups = Subject[P2TMessage]()
        self.drops = Subject[Disconnected]()
        self.sent: list[tuple[str, Any, str, PacketId]] = []
        self.refuse: Exception | None = None
        self.ack_inside_send = False

    @property
    def subjects(self) -> list[Subject[Any]]:
        return [self.status_subject, self.acks, self.p2p, self.groups, self.drops]

    @property
    def status(self) -> Observable[StatusChange]:
        return self.status_subject

    @property
    def server_acks(self) -> Observable[ServerAck]:
        return self.acks

    @property
    def p2p_messages(self) -> Observable[P2PMessage]:
        return self.p2p

    @property
    def group_messages(self) -> Observable[P2TMessage]:
        return self.groups

    @property
    def disconnects(self) -> Observable[Disconnected]:
        return self.drops

    def _send(self, kind: str, to: Any, text: str) -> PacketId:
        if self.refuse is not None:
            raise self.refuse
        packet_id = PacketId(f"pk{len(self.sent) + 1}")
        self.sent.append((kind, to, text, packet_id))
        if self.ack_inside_send:
            self.acks.on_next(ack(packet_id, sequence=99))
        return packet_id

    def send_message(self, to: str, text: str) -> PacketId:
        return self._send("p2p", to, text)

    def send_group_message(self, topic_id: int, text: str) -> PacketId:
        return self._send("p2t", topic_id, text)


def p2p(
    text: str, *, sender: str = "bob", to: str = "alice", seq: int = 1, pid: str = ""
) -> P2PMessage:
    return P2PMessage(
        packet_id=PacketId(pid or f"in-{sender}-{seq}"),
        sequence=seq,
        timestamp=T0 + seq,
        from_account=sender,
        from_resource="r1",
        to_account=to,
        to_resource="",
        payload=text.encode(),
    )


def p2t(
    text: str, *, sender: str = "carol", topic: int = 7, seq: int = 1, pid: str = ""
) -> P2TMessage:
    return P2TMessage(
        packet_id=PacketId(pid or f"g-{sender}-{seq}"),
        sequence=seq,
        timestamp=T0 + seq,
        from_account=sender,
        from_resource="r1",
        topic_id=topic,
        payload=text.encode(),
    )


def ack(packet_id: str, *, sequence: int = 42, err: str = "") -> ServerAck:
    return ServerAck(
        packet_id=PacketId(packet_id), sequence=sequence, timestamp=T0 + 500, err_msg=err
    )


def press_enter(panel: ChatPanel) -> None:
    """What the browser's Text view sends to the kernel when Enter is pressed."""
    panel.text._handle_custom_msg({"event": "submit"}, [])


def click_row(panel: ChatPanel, conversation: ConversationId) -> None:
    """What a click on a conversation row does: the front end sets the Select's index."""
    ids = [value for _label, value in panel.conversation_list.options]
    panel.conversation_list.index = ids.index(conversation)


@pytest.fixture
def user() -> FakeUser:
    return FakeUser()


@pytest.fixture
def panel(user: FakeUser) -> Iterator[ChatPanel]:
    made = ChatPanel(user, clock=lambda: T0 / 1000)
    yield made
    made.close()


# --------------------------------------------------------------------------- incoming


def test_messages_land_in_their_conversations_with_unread_counts(
    user: FakeUser, panel: ChatPanel
) -> None:
    user.p2p.on_next(p2p("hi alice", seq=1))
    user.p2p.on_next(p2p("are you there?", seq=2))
    user.groups.on_next(p2t("hello group", seq=3))
    user.p2p.on_next(p2p("from dave", sender="dave", seq=4))

    assert [m.text for m in panel.model.messages(BOB)] == ["hi alice", "are you there?"]
    assert [m.text for m in panel.model.messages(GROUP)] == ["hello group"]
    assert panel.model.messages(GROUP)[0].sender == "carol"
    assert [label for label, _ in panel.conversation_list.options] == [
        "bob (2)",
        "# 7 (1)",
        "dave (1)",
    ]
    assert panel.model.total_unread == 4
    assert panel.model.selected is None
    assert "Pick a conversation" in panel.message_view.value


def test_selecting_a_conversation_shows_it_and_clears_its_unread(
    user: FakeUser, panel: ChatPanel
) -> None:
    user.p2p.on_next(p2p("hi alice", seq=1))
    user.groups.on_next(p2t("hello group", seq=2))

    click_row(panel, GROUP)

    assert panel.model.selected == GROUP
    assert panel.model.unread(GROUP) == 0
    assert panel.model.unread(BOB) == 1
    assert "hello group" in panel.message_view.value
    assert "carol" in panel.message_view.value
    assert "hi alice" not in panel.message_view.value
    assert "Group 7" in panel.header_view.value
    assert [label for label, _ in panel.conversation_list.options] == ["bob (1)", "# 7"]

    # New messages in the conversation on screen are read at once.
    user.groups.on_next(p2t("more", seq=3))
    assert panel.model.unread(GROUP) == 0
    assert "more" in panel.message_view.value
    assert panel.conversation_list.index == 1


def test_message_text_is_escaped(user: FakeUser, panel: ChatPanel) -> None:
    panel.open_conversation("bob")
    user.p2p.on_next(p2p("<script>alert(1)</script> & 😀", seq=1))
    assert "<script>" not in panel.message_view.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; 😀" in panel.message_view.value


def test_own_message_from_another_resource_goes_to_the_recipient(
    user: FakeUser, panel: ChatPanel
) -> None:
    user.p2p.on_next(p2p("sent from my phone", sender="alice", to="bob", seq=5))
    (entry,) = panel.model.messages(BOB)
    assert entry.outgoing
    assert entry.state is MessageState.ACKED
    assert panel.model.unread(BOB) == 0


# --------------------------------------------------------------------------- sending


def test_enter_sends_the_text_box_and_the_ack_marks_it(user: FakeUser, panel: ChatPanel) -> None:
    panel.open_conversation("bob")
    panel.text.value = "hello bob"
    press_enter(panel)

    assert user.sent == [("p2p", "bob", "hello bob", "pk1")]
    assert panel.text.value == ""
    (entry,) = panel.model.messages(BOB)
    assert (entry.state, entry.packet_id, entry.sender) == (MessageState.PENDING, "pk1", "alice")
    assert 'data-state="pending"' in panel.message_view.value

    user.acks.on_next(ack("pk1", sequence=42))

    (entry,) = panel.model.messages(BOB)
    assert (entry.state, entry.sequence) == (MessageState.ACKED, 42)
    assert 'data-state="acked"' in panel.message_view.value
    assert "#42" in panel.message_view.value
    assert panel.model.pending == frozenset()


def test_button_sends_to_a_group_and_an_error_ack_fails_it(
    user: FakeUser, panel: ChatPanel
) -> None:
    panel.open_group(7)
    panel.text.value = "hi all"
    panel.send_button.click()

    assert user.sent == [("p2t", 7, "hi all", "pk1")]
    user.acks.on_next(ack("pk1", sequence=0, err="topic not found"))

    (entry,) = panel.model.messages(GROUP)
    assert (entry.state, entry.error) == (MessageState.FAILED, "topic not found")
    assert "topic not found" in panel.message_view.value
    assert 'data-state="failed"' in panel.message_view.value


def test_a_group_echo_of_our_message_updates_it_instead_of_duplicating(
    user: FakeUser, panel: ChatPanel
) -> None:
    panel.open_group(7)
    packet_id = panel.send("to the group")
    assert packet_id is not None
    user.groups.on_next(p2t("to the group", sender="alice", seq=12, pid=packet_id))
    user.acks.on_next(ack(packet_id, sequence=12))  # a late ack changes nothing more

    (entry,) = panel.model.messages(GROUP)
    assert (entry.state, entry.sequence) == (MessageState.ACKED, 12)


def test_a_refused_send_is_shown_failed(user: FakeUser, panel: ChatPanel) -> None:
    panel.open_conversation("bob")
    user.refuse = NotLoggedIn()
    panel.text.value = "anyone?"
    press_enter(panel)

    assert user.sent == []
    (entry,) = panel.model.messages(BOB)
    assert entry.state is MessageState.FAILED
    assert entry.packet_id is None
    assert "not logged in" in entry.error
    assert "not logged in" in panel.message_view.value


def test_nothing_is_sent_without_text_or_conversation(user: FakeUser, panel: ChatPanel) -> None:
    assert panel.text.disabled
    assert panel.send_button.disabled
    assert panel.send("hello?") is None
    assert "Pick or open a conversation" in panel.hint_view.value
    panel.open_conversation("bob")
    assert not panel.text.disabled
    panel.text.value = "   "
    press_enter(panel)
    panel.send_button.click()
    assert user.sent == []
    assert panel.model.messages(BOB) == ()


def test_an_ack_that_overtakes_the_send_call_still_counts(user: FakeUser, panel: ChatPanel) -> None:
    user.ack_inside_send = True
    panel.open_conversation("bob")
    panel.send("quick")
    (entry,) = panel.model.messages(BOB)
    assert (entry.state, entry.sequence) == (MessageState.ACKED, 99)


class BlockingUser(FakeUser):
    """Like SyncMIMCUser: a send waits for another thread, which is delivering to us meanwhile."""

    def _send(self, kind: str, to: Any, text: str) -> PacketId:
        packet_id = PacketId(f"pk{len(self.sent) + 1}")
        self.sent.append((kind, to, text, packet_id))

        def loop_thread() -> None:
            self.p2p.on_next(p2p("delivered while you were sending", seq=len(self.sent)))
            self.acks.on_next(ack(packet_id, sequence=7))

        worker = threading.Thread(target=loop_thread, daemon=True)
        worker.start()
        worker.join(TIMEOUT)
        self.worker_stuck = worker.is_alive()
        return packet_id


def test_a_send_does_not_hold_the_panel_while_the_user_blocks() -> None:
    user = BlockingUser()
    panel = ChatPanel(user)
    panel.open_conversation("bob")
    panel.send("hello")
    assert not user.worker_stuck
    texts = [(m.text, m.state) for m in panel.model.messages(BOB)]
    assert texts == [
        ("delivered while you were sending", MessageState.RECEIVED),
        ("hello", MessageState.ACKED),
    ]
    panel.close()


def test_no_ack_in_time_fails_the_message() -> None:
    user = FakeUser()
    scheduler = TestScheduler()
    panel = ChatPanel(user, scheduler=scheduler, ack_timeout=5.0, render_interval=0)
    panel.open_conversation("bob")
    late = panel.send("will time out")
    acked = panel.send("will be acked")
    assert late is not None
    assert acked is not None

    scheduler.advance_by(4.0)
    user.acks.on_next(ack(acked, sequence=3))
    scheduler.advance_by(1.5)

    states = {m.packet_id: (m.state, m.error) for m in panel.model.messages(BOB)}
    assert states[late] == (MessageState.FAILED, "no server ack within 5 s")
    assert states[acked] == (MessageState.ACKED, "")
    assert "no server ack within 5 s" in panel.message_view.value
    panel.close()


# --------------------------------------------------------------------------- the rest of the form


def test_the_form_opens_accounts_and_topics(user: FakeUser, panel: ChatPanel) -> None:
    from mimc_rx.widgets import ConversationKind

    panel.new_target.value = " bob "
    panel.open_button.click()
    assert panel.model.selected == BOB
    assert panel.new_target.value == ""

    panel.new_kind.value = ConversationKind.GROUP
    panel.new_target.value = "general"
    panel.open_button.click()
    assert panel.model.selected == BOB
    assert "topic id is a number" in panel.hint_view.value

    panel.new_target.value = "7"
    panel.new_target._handle_custom_msg({"event": "submit"}, [])  # Enter in the form
    assert panel.model.selected == GROUP
    assert panel.hint_view.value == ""
    assert [label for label, _ in panel.conversation_list.options] == ["bob", "# 7"]
    assert panel.conversation_list.index == 1


# --------------------------------------------------------------------------- status


def test_status_follows_login_disconnects_and_reconnects(user: FakeUser, panel: ChatPanel) -> None:
    def shown() -> str:
        return str(panel.status_view.value)

    assert panel.model.status.state is ConnectionState.OFFLINE
    assert 'data-state="offline"' in shown()
    assert "alice" in shown()

    user.status_subject.on_next(StatusChange(online=True))
    assert 'data-state="online"' in shown()

    user.drops.on_next(
        Disconnected(
            reason=DisconnectReason.CONNECTION_LOST, detail="server went away", will_reconnect=True
        )
    )
    user.status_subject.on_next(StatusChange(online=False))
    assert 'data-state="disconnected"' in shown()
    assert "connection-lost (server went away), reconnecting" in shown()

    user.status_subject.on_next(StatusChange(online=True))
    assert 'data-state="online"' in shown()
    assert "reconnected 1x" in shown()
    assert panel.model.status.disconnects == 1

    user.status_subject.on_next(
        StatusChange(online=False, err_type="auth", err_reason="invalid-sig", err_desc="bad token")
    )
    assert 'data-state="offline"' in shown()
    assert "auth/invalid-sig (bad token)" in shown()


def test_a_stream_error_shows_in_the_status(user: FakeUser, panel: ChatPanel) -> None:
    user.p2p.on_error(RuntimeError("boom"))
    assert "stream error/boom" in panel.status_view.value


# --------------------------------------------------------------------------- lifetime


def test_close_disposes_every_subscription_and_the_widgets(user: FakeUser) -> None:
    panel = ChatPanel(user)
    assert all(len(subject.observers) == 1 for subject in user.subjects)
    parts = [panel.widget, panel.text, panel.message_view, panel.conversation_list]

    panel.close()

    assert panel.closed
    assert all(len(subject.observers) == 0 for subject in user.subjects)
    assert all(part.comm is None for part in parts)
    user.p2p.on_next(p2p("after close"))
    assert panel.model.messages(BOB) == ()
    assert panel.send("nope") is None
    panel.close()  # twice is fine


def test_close_cancels_timers() -> None:
    user = FakeUser()
    scheduler = TestScheduler()
    panel = ChatPanel(user, scheduler=scheduler, ack_timeout=5.0, render_interval=0.1)
    panel.open_conversation("bob")
    packet_id = panel.send("pending forever")
    panel.close()
    scheduler.advance_by(10.0)
    (entry,) = panel.model.messages(BOB)
    assert entry.packet_id == packet_id
    assert entry.state is MessageState.PENDING


def test_a_failing_render_does_not_reach_the_stream(
    user: FakeUser,
    panel: ChatPanel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("render broke")

    monkeypatch.setattr("mimc_rx.widgets.panel.render_messages", broken)
    user.p2p.on_next(p2p("one", seq=1))  # must not raise into the Subject
    assert "render broke" in caplog.text
    monkeypatch.undo()
    user.p2p.on_next(p2p("two", seq=2))
    assert [m.text for m in panel.model.messages(BOB)] == ["one", "two"]


def test_bursts_are_rendered_once_per_interval() -> None:
    user = FakeUser()
    scheduler = TestScheduler()
    panel = ChatPanel(user, scheduler=scheduler, render_interval=0.1)
    panel.open_conversation("bob")
    scheduler.advance_by(0.2)
    renders: list[str] = []
    panel.message_view.observe(lambda change: renders.append(change["new"]), names="value")

    for seq in range(1, 51):
        user.p2p.on_next(p2p(f"burst {seq}", seq=seq))
    assert renders == []
    scheduler.advance_by(0.2)

    assert len(renders) == 1
    assert "burst 50" in renders[0]
    panel.close()


def test_history_is_bounded(user: FakeUser) -> None:
    panel = ChatPanel(user, max_messages=3, max_conversations=2)
    for seq in range(1, 6):
        user.p2p.on_next(p2p(f"m{seq}", seq=seq))
    assert [m.text for m in panel.model.messages(BOB)] == ["m3", "m4", "m5"]

    panel.open_group(7)
    user.p2p.on_next(p2p("from dave", sender="dave", seq=6))
    ids = [summary.id for summary in panel.model.conversations]
    assert ids == [GROUP, ConversationId.p2p("dave")]  # bob, least recently active, went
    panel.close()


def test_the_panel_displays_itself(panel: ChatPanel) -> None:
    bundle = panel._repr_mimebundle_()
    assert bundle is not None
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == panel.widget.model_id
    assert bundle["text/plain"] == repr(panel)
    assert "alice" in repr(panel)


def test_the_first_display_shows_the_replayed_status_at_once() -> None:
    user = FakeUser()
    user.status_subject.on_next(StatusChange(online=True))
    panel = ChatPanel(user, scheduler=TestScheduler(), render_interval=0.1)
    assert 'data-state="online"' in panel.status_view.value
    panel.close()


def test_importing_the_widgets_module_does_not_import_ipywidgets() -> None:
    code = "import sys, mimc_rx.widgets; assert 'ipywidgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- the model alone


def test_model_forgets_pending_ids_of_dropped_messages() -> None:
    model = ChatModel("alice", max_messages=2)
    model.add_outgoing(BOB, "one", PacketId("a"), now_ms=T0)
    model.add_outgoing(BOB, "two", PacketId("b"), now_ms=T0)
    model.add_outgoing(BOB, "three", PacketId("c"), now_ms=T0)
    assert model.pending == {"b", "c"}
    assert not model.fail(PacketId("a"), "late")


def test_model_eviction_can_drop_the_selection_when_nothing_else_is_left() -> None:
    model = ChatModel("alice", max_conversations=1)
    model.open(BOB)
    model.receive(p2t("hello", seq=1))
    assert [s.id for s in model.conversations] == [GROUP]
    assert model.selected is None


def test_conversation_ids() -> None:
    assert ConversationId.group(12).topic_id == 12
    assert ConversationId.group(12).label == "# 12"
    with pytest.raises(ValueError, match="empty"):
        ConversationId.p2p("")
    with pytest.raises(ValueError, match="not a topic"):
        _ = BOB.topic_id


def test_render_keeps_the_newest_in_view_and_lists_in_order() -> None:
    model = ChatModel("alice")
    model.receive(p2p("first", seq=1))
    model.receive(p2p("second", seq=2))
    rendered = render_messages(model.messages(BOB))
    assert "column-reverse" in rendered
    assert rendered.index("first") < rendered.index("second")
    assert 'title="sequence 2"' in rendered
