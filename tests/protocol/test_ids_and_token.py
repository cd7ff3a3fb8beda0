"""Id factories (docs/protocol.md 6.2) and the token answer (8.1, 6.1 step 5)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mimc_rx.errors import TokenError
from mimc_rx.protocol.ids import CounterIdFactory, WebIdFactory, random_challenge
from mimc_rx.protocol.token import TokenInfo, parse_token_answer

from .vectors import APP_ID, load, token_answer


def test_web_ids_look_like_the_captured_ones() -> None:
    seen = load("primitives")["web_packet_ids_seen"]
    pattern = re.compile(seen["pattern"])
    assert all(pattern.match(example) for example in seen["examples"])
    ids = WebIdFactory(clock_ms=lambda: 1795863108317)
    made = [ids() for _ in range(1001)]
    assert made[0] == "web17958631083170"  # the first captured CONN id
    assert made[999] == "web1795863108317999"
    assert made[1000] == "web17958631083170"  # the counter wraps after 999
    assert all(pattern.match(i) for i in made)


def test_server_ids_and_challenges() -> None:
    ids = CounterIdFactory("srv", clock_ms=lambda: 1795863109632)
    assert [ids(), ids()] == ["srv1795863109632-1", "srv1795863109632-2"]
    challenge = random_challenge()
    assert re.fullmatch(r"[0-9a-f]{32}", challenge)
    assert challenge != random_challenge()


@pytest.mark.parametrize("account", ["alice", "bob", "eve"])
def test_recorded_token_answers_parse(account: str) -> None:
    answer = token_answer(account)
    data = answer["data"]
    expected = TokenInfo(
        app_id=APP_ID,
        app_package=data["appPackage"],
        app_account=account,
        chid=data["miChid"],
        uuid=int(data["miUserId"]),
        security_key_b64=data["miUserSecurityKey"],
        token=data["token"],
        fe_domain_name=data["feDomainName"],
    )
    assert parse_token_answer(answer, app_id=APP_ID, app_account=account) == expected
    raw = json.dumps(answer)
    assert parse_token_answer(raw, app_id=APP_ID, app_account=account) == expected
    assert parse_token_answer(raw.encode(), app_id=APP_ID, app_account=account) == expected


def _with(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(json.dumps(token_answer("bob")))
    for key, value in changes.items():
        if value is None:
            answer["data"].pop(key, None)
        else:
            answer["data"][key] = value
    return answer


@pytest.mark.parametrize(
    ("answer", "err_type", "err_reason"),
    [
        (
            {"code": 401, "message": "bad key", "data": None},
            "get token failed",
            "token info code:401",
        ),
        ({"code": True, "data": {}}, "get token failed", "token info code:True"),
        ({"message": "no code"}, "get token failed", "token info code:None"),
        (_with(appAccount="alice"), "", "account not same"),
        (_with(appId="1"), "", "appid not same"),
        (_with(appId=True), "", "appid not same"),
        (_with(miUserId=None), "get token failed", "token info malformed"),
        (_with(miUserId="abc"), "get token failed", "token info malformed"),
        (_with(miUserSecurityKey="%%%"), "get token failed", "token info malformed"),
        (_with(miUserSecurityKey=None), "get token failed", "token info malformed"),
        (_with(token=""), "get token failed", "token info malformed"),
        (_with(miChid="nine"), "get token failed", "token info malformed"),
        ("{", "get token failed", "token info malformed"),
        (b"\xff", "get token failed", "token info malformed"),
        ("null", "get token failed", "token info malformed"),
        ({"code": 200, "data": []}, "get token failed", "token info malformed"),
    ],
)
def test_bad_answers(answer: Any, err_type: str, err_reason: str) -> None:
    with pytest.raises(TokenError) as info:
        parse_token_answer(answer, app_id=APP_ID, app_account="bob")
    assert (info.value.err_type, info.value.err_reason) == (err_type, err_reason)


def test_lenient_where_it_is_harmless() -> None:
    answer = _with(appId=APP_ID, miUserId=20000000000000002, miChid=None, feDomainName=None)
    answer["code"] = "200"
    info = parse_token_answer(answer, app_id=APP_ID, app_account="bob")
    assert (info.uuid, info.chid, info.fe_domain_name) == (20000000000000002, 9, "")
