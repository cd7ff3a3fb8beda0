"""The message path's positional constructors build the values the keyword calls build."""

from __future__ import annotations

from typing import Any

from mimc_rx.server.hub.messages import _make_p2p_write
from mimc_rx.server.storage.interface import P2PWrite
from mimc_rx.server.storage.records import User
from mimc_rx.server.storage.sqlite_async import _copy_user

from .conftest import APP


def test_the_positional_p2p_intent_equals_the_keyword_one() -> None:
    sender = User(uuid=7, app_id=APP.app_id, account="alice", security_key="k")
    fields: dict[str, Any] = {
        "app": APP,
        "packet_id": "web1",
        "sender": sender,
        "from_resource": "res",
        "to_account": "bob",
        "payload": b"hi",
        "biz_type": "TEXT",
        "to_resource": "",
        "ts": 1_700_000_000_000,
        "persist": False,
    }
    made = _make_p2p_write(*fields.values())
    assert made == P2PWrite(**fields)
    assert repr(made) == repr(P2PWrite(**fields))


def test_the_tick_copies_a_user_field_by_field() -> None:
    user = User(uuid=7, app_id=APP.app_id, account="alice", security_key="k", last_seq=42)
    copy = _copy_user(user)
    assert copy == user
    assert copy is not user
    copy.last_seq += 1  # the store's user is not touched
    assert user.last_seq == 42
