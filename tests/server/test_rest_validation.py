"""Hostile HTTP input: every answer is the JSON envelope, never a 500 "internal error".

Each case here used to reach int() or SQLite and fail with OverflowError / RecursionError.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mimc_rx.server.validation import ApiError, parse_id

from .conftest import APP, login_http

BIG = 10**30


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        1.5,
        2.0,
        float("inf"),
        float("nan"),
        2**63,
        -(2**63) - 1,
        "9" * 30,
        "abc",
        "",
        [1],
        {"a": 1},
    ],
)
def test_parse_id_refuses_what_is_not_an_int64(value: Any) -> None:
    with pytest.raises(ApiError) as info:
        parse_id(value, "x")
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (2**63 - 1, 2**63 - 1), (-(2**63), -(2**63)), ("123", 123), (" -7 ", -7)],
)
def test_parse_id_accepts_int64_values_and_decimal_strings(value: Any, expected: int) -> None:
    assert parse_id(value, "x") == expected


async def _post(http: httpx.AsyncClient, path: str, token: str, body: bytes) -> dict[str, Any]:
    answer = await http.post(path, headers={"token": token}, content=body)
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/api/msg/p2t/query", {"topicId": BIG, "utcFromTime": 0, "utcToTime": 1000}),
        ("/api/msg/p2t/queryOnSequence", {"topicId": 1, "startSeq": BIG, "stopSeq": BIG}),
        ("/api/msg/p2p/queryOnSequence", {"toAccount": "bob", "startSeq": 0, "stopSeq": BIG}),
        ("/api/msg/p2p/queryOnCount", {"toAccount": "bob", "count": 5, "utcToTime": BIG}),
    ],
)
async def test_history_refuses_huge_integers(
    http: httpx.AsyncClient, path: str, fields: dict[str, Any]
) -> None:
    token = (await login_http(http, "alice")).token
    body = {"appId": str(APP.app_id), "account": "alice", "fromAccount": "alice", **fields}
    answer = await _post(http, path, token, json.dumps(body).encode())
    assert answer["code"] == 400, answer
    assert "64-bit integer" in answer["message"]


async def test_non_json_constants_are_refused(http: httpx.AsyncClient) -> None:
    token = (await login_http(http, "alice")).token
    body = b'{"appId":"%d","account":"alice","topicId":1,"utcFromTime":-Infinity,"utcToTime":1}'
    answer = await _post(http, "/api/msg/p2t/query", token, body % APP.app_id)
    assert (answer["code"], answer["message"]) == (400, "the body is not valid JSON")


async def test_deeply_nested_body_is_a_400(http: httpx.AsyncClient) -> None:
    answer = (await http.post("/api/account/token", content=b"[" * 100_000)).json()
    assert (answer["code"], answer["message"]) == (400, "the body is not valid JSON")


async def test_oversized_body_is_refused_in_the_envelope(http: httpx.AsyncClient) -> None:
    body = json.dumps({"appAccount": "a", "pad": "x" * (1024 * 1024)}).encode()
    answer = (await http.post("/api/account/token", content=body)).json()
    assert answer["code"] == 413, answer
    assert answer["data"] is None
    # Without Content-Length (chunked), the limit still holds.

    async def chunks() -> Any:
        for _ in range(3):
            yield b" " * 600_000

    answer = (await http.post("/api/account/token", content=chunks())).json()
    assert answer["code"] == 413, answer


async def test_huge_topic_id_in_contact_query_is_a_400(http: httpx.AsyncClient) -> None:
    token = (await login_http(http, "alice")).token
    answer = (
        await http.delete(f"/api/contact/p2t/session?topicId={'9' * 30}", headers={"token": token})
    ).json()
    assert answer["code"] == 400, answer


async def test_push_with_a_huge_topic_id_is_a_400(http: httpx.AsyncClient) -> None:
    body = {
        "appId": str(APP.app_id),
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "fromAccount": "alice",
        "topicId": BIG,
        "msg": "aGk=",
    }
    answer = (await http.post("/api/push/p2t", json=body)).json()
    assert answer["code"] == 400, answer
