"""Mistakes a notebook user makes, each answered at once by an error that says what to do."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from mimc_rx.client import user as user_module
from mimc_rx.client.sync import SyncMIMCUser
from mimc_rx.client.user import MIMCUser
from mimc_rx.errors import TokenError
from mimc_rx.protocol.events import P2PMessage, P2TMessage, PacketId, ServerAck
from mimc_rx.protocol.token import parse_token_answer

from .conftest import TIMEOUT
from .fakes import FakeNet, token_answer

_SEQUENCES = itertools.count(1)


def make_user(net: FakeNet, **kwargs: Any) -> MIMCUser:
    return MIMCUser("alice", app_id=1001, token_fetcher=token_answer, **net.kwargs(), **kwargs)


def message(sender: str, text: str, topic: int | None = None) -> P2PMessage | P2TMessage:
    common: dict[str, Any] = {
        "packet_id": PacketId(f"{sender}-{text}"),
        "sequence": next(_SEQUENCES),
        "timestamp": 1,
        "from_account": sender,
        "from_resource": "r",
        "payload": text.encode(),
    }
    if topic is not None:
        return P2TMessage(topic_id=topic, **common)
    return P2PMessage(to_account="alice", to_resource="", **common)


async def test_a_sync_user_in_a_running_loop_names_mimcuser() -> None:
    with pytest.raises(RuntimeError, match=r"Use MIMCUser with await"):
        SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, url="ws://x.invalid/")


def test_a_sync_user_call_from_a_loop_thread_is_refused_at_once() -> None:
    user = SyncMIMCUser("alice", app_id=1001, token_fetcher=token_answer, **FakeNet().kwargs())
    try:

        async def in_a_notebook_cell() -> None:
            user.login()

        with pytest.raises(RuntimeError, match="MIMCUser"):
            asyncio.run(asyncio.wait_for(in_a_notebook_cell(), TIMEOUT))
    finally:
        user.close()


def test_forgetting_url_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_module, "_told_about_default_url", False)
    with caplog.at_level(logging.WARNING, logger="mimc_rx.client.user"):
        first = MIMCUser("alice", app_id=1, token_fetcher=token_answer)
        MIMCUser("bob", app_id=1, token_fetcher=token_answer)
    said = [r.getMessage() for r in caplog.records if "url=" in r.getMessage()]
    assert len(said) == 1
    assert "wss://wsapp.chat.xiaomi.net" in said[0]
    assert "'alice'" in said[0]
    assert first.url == "wss://wsapp.chat.xiaomi.net"


async def test_a_connection_failure_names_the_url() -> None:
    url = "ws://127.0.0.1:9/"  # the discard port: nothing listens there
    user = MIMCUser("alice", app_id=1001, token_fetcher=token_answer, url=url, reconnect=False)
    status = await asyncio.wait_for(user.login(), TIMEOUT)
    assert not status.online
    assert url in status.err_desc


@pytest.mark.parametrize("field", ["appAccount", "appId", "miUserId", "token"])
def test_a_token_answer_without_a_field_names_it(field: str) -> None:
    answer = token_answer()
    del answer["data"][field]
    with pytest.raises(TokenError) as error:
        parse_token_answer(answer, app_id=1001, app_account="alice")
    assert error.value.err_reason == "token info malformed"
    assert f"no {field} field" in error.value.err_desc


async def test_a_token_answer_without_a_field_is_reported_by_login() -> None:
    def fetch() -> dict[str, Any]:
        answer = token_answer()
        del answer["data"]["appAccount"]
        return answer

    # The real protocol core checks the answer before any connection is tried.
    user = MIMCUser("alice", app_id=1001, token_fetcher=fetch, url="ws://127.0.0.1:9/")
    status = await asyncio.wait_for(user.login(), TIMEOUT)
    assert "account not same" not in status.err_reason
    assert "no appAccount field" in status.err_desc


async def test_ack_of_a_packet_id_never_sent_fails_at_once() -> None:
    net = FakeNet()
    user = make_user(net)
    assert (await user.login()).online
    with pytest.raises(LookupError, match="never sent"):
        await asyncio.wait_for(user.ack("no-such-id", timeout=60), 1.0)
    pid = user.send_message("bob", "hi")
    net.current.push(ServerAck(packet_id=pid, sequence=5, timestamp=1))
    assert (await user.ack(pid, timeout=TIMEOUT)).sequence == 5
    await user.logout()


def test_a_user_reused_across_asyncio_runs_says_its_loop_is_gone() -> None:
    net = FakeNet()
    user = make_user(net)

    async def first() -> None:
        assert (await user.login()).online

    async def second() -> None:
        user.send_message("bob", "hi")

    asyncio.run(first())
    with pytest.raises(RuntimeError, match="that loop is gone"):
        asyncio.run(second())

    async def login_again() -> None:
        await user.login()

    with pytest.raises(RuntimeError, match="make a new MIMCUser"):
        asyncio.run(login_again())


async def test_next_message_waits_for_the_matching_one() -> None:
    net = FakeNet()
    user = make_user(net)
    assert (await user.login()).online
    waiting = asyncio.ensure_future(user.next_message(from_account="bob", timeout=TIMEOUT))
    await asyncio.sleep(0)
    net.current.push(message("carol", "not this"), message("bob", "this"))
    got = await waiting
    assert (got.from_account, got.text) == ("bob", "this")
    in_group = asyncio.ensure_future(user.next_message(topic_id=7, timeout=TIMEOUT))
    await asyncio.sleep(0)
    net.current.push(message("bob", "p2p"), message("bob", "group", topic=7))
    assert (await in_group).text == "group"
    with pytest.raises(TimeoutError, match=r"no message from dave for alice within 0\.01 s"):
        await user.next_message(from_account="dave", timeout=0.01)
    await user.logout()


async def test_sent_messages_tell_every_send_and_group_names_are_remembered() -> None:
    net = FakeNet()
    user = make_user(net)
    assert (await user.login()).online
    sent: list[P2PMessage | P2TMessage] = []
    user.sent_messages.subscribe(sent.append)
    pid = user.send_message("bob", "from code")
    gid = user.send_group_message(42, b"to the group")
    assert [(m.packet_id, m.text, m.from_account) for m in sent] == [
        (pid, "from code", "alice"),
        (gid, "to the group", "alice"),
    ]
    first, second = sent
    assert isinstance(first, P2PMessage)
    assert first.to_account == "bob"
    assert isinstance(second, P2TMessage)
    assert second.topic_id == 42
    assert user.group_names == {}
    await user.logout()
