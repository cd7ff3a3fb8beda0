"""The chat panel's notebook polish: sends from code, Enter with a lagging value, group names,
theme colours, and the error when ipywidgets is missing."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from reactivex import Observable
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from mimc_rx._extras import MissingExtra
from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId
from mimc_rx.widgets import ChatPanel, ConversationId, MessageState
from mimc_rx.widgets.render import render_header, render_messages

from .test_widgets import FakeUser, ack, p2t, press_enter

pytest.importorskip("ipywidgets")


class CodeUser(FakeUser):
    """A FakeUser whose sends are told on ``sent_messages``, as MIMCUser's are."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_subject = Subject[P2PMessage | P2TMessage]()
        self.group_names: dict[int, str] = {}

    @property
    def sent_messages(self) -> Observable[P2PMessage | P2TMessage]:
        return self.sent_subject

    def _send(self, kind: str, to: Any, text: str) -> PacketId:
        pid = super()._send(kind, to, text)
        common: dict[str, Any] = {
            "packet_id": pid,
            "sequence": 0,
            "timestamp": 1,
            "from_account": self.app_account,
            "from_resource": "r",
            "payload": text.encode(),
        }
        if kind == "p2t":
            self.sent_subject.on_next(P2TMessage(topic_id=to, **common))
        else:
            self.sent_subject.on_next(P2PMessage(to_account=to, to_resource="", **common))
        return pid


def test_a_message_sent_from_code_shows_pending_then_acked() -> None:
    user = CodeUser()
    panel = ChatPanel(user)
    pid = user.send_message("bob", "sent from code")  # not through the panel
    bob = ConversationId.p2p("bob")
    [entry] = panel.model.messages(bob)
    assert (entry.text, entry.state) == ("sent from code", MessageState.PENDING)
    user.acks.on_next(ack(pid, sequence=5))
    [entry] = panel.model.messages(bob)
    assert (entry.state, entry.sequence) == (MessageState.ACKED, 5)
    panel.close()


def test_a_panel_send_is_recorded_once() -> None:
    user = CodeUser()
    panel = ChatPanel(user)
    panel.open_conversation("bob")
    panel.send("typed here")
    assert [e.text for e in panel.model.messages()] == ["typed here"]
    panel.close()


def test_enter_sends_the_value_that_settles_after_it() -> None:
    scheduler = TestScheduler()
    user = FakeUser()
    panel = ChatPanel(user, scheduler=scheduler, render_interval=0, submit_settle=0.15)
    panel.open_conversation("bob")
    panel.text.value = "hello wor"  # the sync lags behind the keyboard
    press_enter(panel)
    scheduler.advance_by(0.1)
    panel.text.value = "hello world"  # the last keystroke arrives after the Enter
    scheduler.advance_by(0.1)
    assert user.sent == []  # still settling
    scheduler.advance_by(0.1)
    assert [text for _kind, _to, text, _pid in user.sent] == ["hello world"]
    assert panel.text.value == ""
    panel.close()


def test_without_a_scheduler_enter_sends_at_once() -> None:
    user = FakeUser()
    panel = ChatPanel(user)
    panel.open_conversation("bob")
    panel.text.value = "now"
    press_enter(panel)
    assert [text for _kind, _to, text, _pid in user.sent] == ["now"]
    panel.close()


def test_groups_show_their_names() -> None:
    user = CodeUser()
    user.group_names[7] = "team"
    panel = ChatPanel(user, group_names={8: "ops"})
    user.groups.on_next(p2t("hello", topic=7))
    user.groups.on_next(p2t("hi", topic=8, seq=2))
    user.groups.on_next(p2t("raw", topic=9, seq=3))
    labels = [s.label for s in panel.model.conversations]
    assert labels == ["# team (1)", "# ops (1)", "# 9 (1)"]
    panel.open_group(7)
    assert "Group team (7)" in panel.header_view.value
    panel.name_group(9, "later")
    assert panel.conversation_list.options[2][0] == "# later (1)"
    panel.close()
    assert "Group 5" in render_header(ConversationId.group(5))


def test_bubbles_and_notes_follow_the_theme() -> None:
    user = CodeUser()
    panel = ChatPanel(user)
    panel.open_conversation("bob")
    panel.send("mine")
    page = render_messages(panel.model.messages())
    # Own bubble: the brand colour mixed into the page background, the theme's text colour;
    # no fixed light colour that would sit under white text in the dark theme.
    assert "color-mix(in srgb,var(--jp-brand-color1" in page
    assert "var(--jp-layout-color1" in page
    assert "color:var(--jp-ui-font-color1" in page
    assert "#c8e1ff);color" not in page
    panel.close()


def test_chat_panel_without_ipywidgets_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(MissingExtra, match=r'pip install "mimc-rx\[notebook\]"'):
        ChatPanel(FakeUser())


def test_the_same_packet_id_from_two_senders_is_two_messages() -> None:
    # Web packet ids are "web" + ms + a counter: two clients sending in the same millisecond
    # make the same id.
    user = CodeUser()
    panel = ChatPanel(user)
    incoming = p2t("from carol", pid="web17000000000000")
    user.groups.on_next(incoming)
    user.sent_subject.on_next(
        P2TMessage(
            packet_id=PacketId("web17000000000000"),
            sequence=0,
            timestamp=2,
            from_account="alice",
            from_resource="r",
            topic_id=7,
            payload=b"from alice",
        )
    )
    texts = [e.text for e in panel.model.messages(ConversationId.group(7))]
    assert texts == ["from carol", "from alice"]
    user.acks.on_next(ack("web17000000000000", sequence=9))
    states = [e.state for e in panel.model.messages(ConversationId.group(7))]
    assert states == [MessageState.RECEIVED, MessageState.ACKED]
    panel.close()
