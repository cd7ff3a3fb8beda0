"""``POST /api/account/token/expire``: the app's backend expires tokens it was given.

Not a route of the cloud API; the network lab uses it to expire a user's tokens on a server
that runs in another process (``NetworkLab.expire_tokens``).
"""

from __future__ import annotations

from typing import Any

import httpx

from mimc_rx.server import LocalServer

from .conftest import APP, OTHER_APP, login_http
from .wire import WireClient

ROUTE = "/api/account/token/expire"


def _body(account: str, tokens: list[Any], **credentials: str) -> dict[str, Any]:
    return {
        "appId": str(APP.app_id),
        "appKey": APP.app_key,
        "appSecret": APP.app_secret,
        "appAccount": account,
        "tokens": tokens,
        **credentials,
    }


async def _bind(server: LocalServer, answer: dict[str, Any]) -> tuple[bool, str, str]:
    client = WireClient(server.ws_url, answer["data"]["appAccount"])
    status = await client.login(answer, expect_ok=False)
    await client.close()
    return status.online, status.err_type, status.err_reason


async def test_wrong_credentials_are_refused_and_expire_nothing(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    alice = await login_http(http, "alice")
    for wrong in (
        {"appSecret": "not-the-secret"},
        {"appKey": OTHER_APP.app_key, "appSecret": OTHER_APP.app_secret},  # another app's pair
        {"appId": "1"},
    ):
        answer = (await http.post(ROUTE, json=_body("alice", [alice.token], **wrong))).json()
        assert (answer["code"], answer["data"]) == (401, None), wrong
    assert await _bind(server, alice.answer) == (True, "", "")


async def test_malformed_bodies_are_refused(http: httpx.AsyncClient) -> None:
    for body in (
        _body("alice", "one-token"),  # type: ignore[arg-type]
        _body("alice", [1]),
        _body("", []),
        {k: v for k, v in _body("alice", []).items() if k != "tokens"},
    ):
        assert (await http.post(ROUTE, json=body)).json()["code"] == 400, body


async def test_an_expired_token_is_refused_at_bind_and_a_new_one_works(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    alice = await login_http(http, "alice")
    bob = await login_http(http, "bob")
    answer = (
        await http.post(ROUTE, json=_body("alice", [alice.token, bob.token, "unknown"]))
    ).json()
    # Only alice's own token counts: bob's and an unknown one are skipped.
    assert answer == {
        "code": 200,
        "message": "success",
        "data": {"appAccount": "alice", "expired": 1},
    }
    assert await _bind(server, alice.answer) == (False, "token-expired", "token-expired")
    assert (await http.get("/api/contact/", headers={"token": alice.token})).json()["code"] == 401
    assert await _bind(server, bob.answer) == (True, "", "")
    # Expiring it again still counts it (it is expired), and changes nothing.
    again = (await http.post(ROUTE, json=_body("alice", [alice.token]))).json()
    assert again["data"] == {"appAccount": "alice", "expired": 1}
    # A fresh token from the token service logs alice in again.
    assert await _bind(server, (await login_http(http, "alice")).answer) == (True, "", "")
