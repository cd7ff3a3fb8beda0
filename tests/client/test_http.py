"""Token fetchers and the uctopic client against an httpx MockTransport (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from mimc_rx.client.http import (
    AccountTokenFetcher,
    ProxyTokenFetcher,
    UCTopicClient,
    http_base_from_ws_url,
)
from mimc_rx.errors import ServerError, TokenError

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def ok(data: object) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "message": "success", "data": data})


@pytest.mark.parametrize(
    ("ws", "http"),
    [
        ("ws://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("wss://example.org/", "https://example.org"),
        ("wss://wsapp.chat.xiaomi.net", "https://mimc.chat.xiaomi.net"),
    ],
)
def test_http_base_from_ws_url(ws: str, http: str) -> None:
    assert http_base_from_ws_url(ws) == http


async def test_account_fetcher_posts_the_credentials_as_strings() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b'{"code":200}')

    fetch = AccountTokenFetcher(
        "http://h:1/",
        app_id=1001,
        app_key="K",
        app_secret="S",
        app_account="alice",
        client=client(handler),
    )
    assert await fetch() == b'{"code":200}'
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://h:1/api/account/token")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "appId": "1001",
        "appKey": "K",
        "appSecret": "S",
        "appAccount": "alice",
    }
    assert "S" not in repr(fetch)
    assert "K" not in repr(fetch).replace("Token", "")


async def test_proxy_fetcher_posts_its_body() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, content=b"{}")

    fetch = ProxyTokenFetcher("http://app/token", {"appAccount": "bob"}, client=client(handler))
    assert await fetch() == b"{}"
    assert json.loads(seen[0]) == {"appAccount": "bob"}


async def test_fetcher_http_error_status_is_a_token_error() -> None:
    fetch = ProxyTokenFetcher(
        "http://app/t", client=client(lambda r: httpx.Response(503, text="busy"))
    )
    with pytest.raises(TokenError) as info:
        await fetch()
    assert "503" in info.value.err_reason
    assert info.value.err_desc == "busy"


async def test_fetcher_network_error_is_a_token_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TokenError) as info:
        await ProxyTokenFetcher("http://app/t", client=client(handler))()
    assert "refused" in info.value.err_desc
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_uctopic_create_list_dismiss() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return ok({"topicId": "40000000000000101", "topicName": "room"})
        if request.url.path.endswith("/topics"):
            return ok(["1", "40000000000000101"])
        return ok(None)

    api = UCTopicClient("http://h", lambda: "TOK", client=client(handler))
    assert await api.create("room") == 40000000000000101
    assert await api.topics() == [1, 40000000000000101]
    await api.dismiss(40000000000000101)
    create, listing, dismiss = seen
    assert json.loads(create.content) == {"topicName": "room"}
    assert create.headers["token"] == "TOK"
    assert str(listing.url) == "http://h/api/uctopic/topics"
    assert (dismiss.method, dismiss.headers["topicId"]) == ("DELETE", "40000000000000101")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"code": 500, "message": "quit topic fail", "data": None}),
        httpx.Response(200, json={"code": 200, "message": "success！", "data": None}),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, json=[1, 2]),
    ],
)
async def test_uctopic_failures_are_server_errors(response: httpx.Response) -> None:
    api = UCTopicClient("http://h", "TOK", client=client(lambda r: response))
    with pytest.raises(ServerError):
        await api.dismiss(1)


async def test_uctopic_without_token_is_refused_before_any_request() -> None:
    calls: list[object] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return ok(None)

    api = UCTopicClient("http://h", lambda: None, client=client(record))
    with pytest.raises(ServerError, match="no token"):
        await api.topics()
    assert calls == []


async def test_uctopic_network_error_is_a_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ServerError) as info:
        await UCTopicClient("http://h", "T", client=client(handler)).create("x")
    assert info.value.code == -1
