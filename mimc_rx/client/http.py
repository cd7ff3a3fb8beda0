"""httpx clients for the HTTP side of MIMC: token fetchers and unlimited-group topics.

A MIMC app never ships its app secret to a client. The client asks the app's own backend (the
"app proxy service" of the official demo) for a token, and that backend calls the token service
(docs/protocol.md 8.1). ``ProxyTokenFetcher`` is the client half of that arrangement;
``AccountTokenFetcher`` calls the token service directly with app credentials, which is what
the local server, tests and notebooks do.

Both are async callables returning the service's raw answer (bytes of JSON), so either is a
``TokenFetcher`` (``mimc_rx.client.seams``). ``MIMCUser`` hands
that answer to the protocol core, which checks it as the web SDK does (6.1 step 5), so a bad
answer becomes a ``StatusChange(online=False, ...)``, never a crash.

``UCTopicClient`` wraps the unlimited-group REST calls of protocol.md 8.2 (create, dismiss, list
joined), authorised by the user's token; ``TopicClient`` creates and dismisses normal groups
(8.3), enough for scripts and the demo to get a topic id for ``send_group_message``.

Without an explicit ``client=``, every fetcher and REST helper of one event loop shares one
``httpx.AsyncClient`` (``shared_client()``): making a client costs tens of milliseconds of CPU
(its TLS context), so a thousand users logging in at once from one process would otherwise
spend their login timeout building clients. ``close_shared_client()`` closes it.

httpx exceptions never escape: they are translated to ``ServerError`` (code -1 when no HTTP
answer came back) or ``TokenError`` at this boundary.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from mimc_rx.errors import ServerError, TokenError

__all__ = [
    "AccountTokenFetcher",
    "ProxyTokenFetcher",
    "TopicClient",
    "UCTopicClient",
    "close_shared_client",
    "http_base_from_ws_url",
    "shared_client",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds before an HTTP call gives up (connect, read and write each)."""

_JSON_HEADERS = {"content-type": "application/json"}

PRODUCTION_WS_URL = "wss://wsapp.chat.xiaomi.net"
PRODUCTION_API_BASE = "https://mimc.chat.xiaomi.net"


def http_base_from_ws_url(ws_url: str) -> str:
    """The HTTP base URL that serves ``/api/...`` next to a websocket URL.

    The local server serves both on one port, so ``ws://h:p/`` maps to ``http://h:p``. The
    production websocket host differs from its API host (docs/protocol.md 1) and is mapped by name.
    """
    url = httpx.URL(ws_url)
    if url.host == httpx.URL(PRODUCTION_WS_URL).host:
        return PRODUCTION_API_BASE
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    port = f":{url.port}" if url.port is not None else ""
    return f"{scheme}://{url.host}{port}"


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)

# A few kept-alive connections: requests waiting for one wait as long as their caller lets
# them (a login storm queues hundreds); connecting, reading and writing keep their own timeouts.
_POOL_SIZE = 16
_SHARED_LIMITS = httpx.Limits(max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE)

# They wait in this FIFO, at no cost per waiter, not in httpcore's pool: each time a request
# comes or goes the pool walks every queued request over every connection and asks every
# connection whether it has expired (a syscall each). With a thousand fetches queued over 64
# connections that was most of a 1,000-user login storm's client CPU; with the gate and 16
# connections the pool's work per request stays small (measured with bench/login_storm.py).
_SHARED_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the fetchers and REST helpers of the running loop share."""
    loop = asyncio.get_running_loop()
    client = _SHARED.get(loop)
    if client is None or client.is_closed:
        client = _SHARED[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(DEFAULT_TIMEOUT, pool=None), limits=_SHARED_LIMITS
        )
    return client


async def close_shared_client() -> None:
    """Close the running loop's shared client (a later call makes a new one). Idempotent."""
    client = _SHARED.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


@asynccontextmanager
async def _client(
    client: httpx.AsyncClient | None,
    timeout: float,  # noqa: ASYNC109
) -> AsyncIterator[httpx.AsyncClient]:
    # The caller's client (its own pool, MockTransport in tests) or the loop's shared one.
    del timeout  # each request passes its own (see _request_timeout)
    if client is not None:
        yield client
        return
    loop = asyncio.get_running_loop()
    gate = _SHARED_GATES.get(loop)
    if gate is None:
        gate = _SHARED_GATES[loop] = asyncio.Semaphore(_POOL_SIZE)
    async with gate:
        yield shared_client()


def _request_timeout(client: httpx.AsyncClient | None, timeout: float) -> Any:
    """The timeout of one request: the caller's client keeps its settings, the shared one
    gets this helper's ``timeout`` (with no limit on waiting for a pooled connection)."""
    return httpx.USE_CLIENT_DEFAULT if client is not None else httpx.Timeout(timeout, pool=None)


class _TokenFetcherBase:
    """Shared request/answer handling of the two token fetchers."""

    def __init__(self, *, client: httpx.AsyncClient | None, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def _post(self, url: str, body: Mapping[str, Any] | None) -> bytes:
        try:
            async with _client(self._client, self._timeout) as client:
                response = await client.post(
                    url,
                    json=body,
                    headers=_JSON_HEADERS,
                    timeout=_request_timeout(self._client, self._timeout),
                )
        except httpx.HTTPError as exc:
            raise TokenError(
                "get token failed", "token request failed", f"{type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code // 100 != 2:
            raise TokenError(
                "get token failed",
                f"token service answered HTTP {response.status_code}",
                response.text[:200],
            )
        return response.content


class ProxyTokenFetcher(_TokenFetcherBase):
    """Fetches a token from the app's own backend (the demo's "app proxy service").

    Posts ``body`` (for example ``{"appAccount": "alice"}``, whatever the backend expects) as
    JSON to ``url`` and returns the answer's raw bytes.

    Args:
        url: the backend endpoint.
        body: the JSON body to post; None posts no body.
        client: an ``httpx.AsyncClient`` to use; by default the loop's shared one.
        timeout: seconds per request.
    """

    def __init__(
        self,
        url: str,
        body: Mapping[str, Any] | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(client=client, timeout=timeout)
        self.url = url
        self.body = dict(body) if body is not None else None

    async def __call__(self) -> bytes:
        """Fetch one fresh token answer; raises ``TokenError`` when the request fails."""
        return await self._post(self.url, self.body)

    def __repr__(self) -> str:
        return f"ProxyTokenFetcher({self.url!r})"


class AccountTokenFetcher(_TokenFetcherBase):
    """Calls the token service ``POST /api/account/token`` with app credentials (protocol.md 8.1).

    Meant for the local server and trusted back ends: it holds the app secret. ``repr`` never
    shows the key or the secret.

    Args:
        base_url: the HTTP base of the server, e.g. ``http://127.0.0.1:8080``.
        app_id: the app id (str or int; sent as a decimal string, as 8 requires).
        app_key: the app key.
        app_secret: the app secret.
        app_account: the account to log in.
        client: an ``httpx.AsyncClient`` to use; by default the loop's shared one.
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        app_id: int | str,
        app_key: str,
        app_secret: str,
        app_account: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(client=client, timeout=timeout)
        self.url = base_url.rstrip("/") + "/api/account/token"
        self.app_id = str(int(app_id))
        self.app_account = app_account
        self._app_key = app_key
        self._app_secret = app_secret

    async def __call__(self) -> bytes:
        """Fetch one fresh token answer; raises ``TokenError`` when the request fails."""
        body = {
            "appId": self.app_id,
            "appKey": self._app_key,
            "appSecret": self._app_secret,
            "appAccount": self.app_account,
        }
        return await self._post(self.url, body)

    def __repr__(self) -> str:
        return (
            f"AccountTokenFetcher({self.url!r}, app_id={self.app_id}, account={self.app_account!r})"
        )


def _unwrap(response: httpx.Response) -> Any:
    """Check the ``{"code", "message", "data"}`` envelope of protocol.md 8 and return ``data``."""
    try:
        envelope = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServerError(
            response.status_code, f"answer is not JSON: {response.text[:200]}"
        ) from exc
    if not isinstance(envelope, dict):
        raise ServerError(response.status_code, "answer is not a JSON object")
    code = envelope.get("code")
    message = str(envelope.get("message", ""))
    # The SDK requires both code 200 and message "success" (docs/protocol.md 8).
    if code != 200 or message != "success":
        raise ServerError(int(code) if isinstance(code, int) else response.status_code, message)
    return envelope.get("data")


class UCTopicClient:
    """The unlimited-group REST API of docs/protocol.md 8.2, authorised by a user token.

    Args:
        base_url: the HTTP base (``http_base_from_ws_url`` derives it from a websocket URL).
        token: the user's token, or a callable returning the current one (tokens change on
            each login, so ``MIMCUser`` passes a callable).
        client: an ``httpx.AsyncClient`` to use; by default the loop's shared one.
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        token: str | Callable[[], str | None],
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/uctopic"
        self._token = token
        self._client = client
        self._timeout = timeout

    def _headers(self, **extra: str) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        if not token:
            raise ServerError(-1, "no token: log in before calling the topic API")
        return {**_JSON_HEADERS, "token": token, **extra}

    async def _request(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> Any:
        try:
            async with _client(self._client, self._timeout) as client:
                response = await client.request(
                    method,
                    url,
                    headers=headers,
                    json=body,
                    timeout=_request_timeout(self._client, self._timeout),
                )
        except httpx.HTTPError as exc:
            raise ServerError(-1, f"request failed: {type(exc).__name__}: {exc}") from exc
        return _unwrap(response)

    async def create(self, topic_name: str) -> int:
        """Create an unlimited group; returns its topic id. Joining is a separate UC JOIN."""
        data = await self._request("POST", self.url, self._headers(), {"topicName": topic_name})
        try:
            return int(data["topicId"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ServerError(200, f"create answer has no usable topicId: {data!r}") from exc

    async def dismiss(self, topic_id: int) -> None:
        """Dismiss an unlimited group we own; members get a DISMISS push."""
        await self._request("DELETE", self.url, self._headers(topicId=str(int(topic_id))))

    async def topics(self) -> list[int]:
        """The ids of the unlimited groups this user has joined."""
        data = await self._request("GET", self.url + "/topics", self._headers())
        if not isinstance(data, list):
            raise ServerError(200, f"topic list is not a list: {data!r}")
        try:
            return [int(t) for t in data]
        except (TypeError, ValueError) as exc:
            raise ServerError(200, f"topic list has a bad id: {data!r}") from exc

    def __repr__(self) -> str:
        return f"UCTopicClient({self.url!r})"


class TopicClient:
    """A small client of the normal-group REST API (docs/protocol.md 8.3), authorised by a token.

    Args:
        base_url: the HTTP base of the server.
        app_id: the app id (part of every path).
        token: the user's token, or a callable returning the current one.
        client: an ``httpx.AsyncClient`` to use; by default the loop's shared one.
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        app_id: int | str,
        token: str | Callable[[], str | None],
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/api/topic/{int(app_id)}"
        self._api = UCTopicClient(base_url, token, client=client, timeout=timeout)

    async def create(self, topic_name: str, accounts: list[str] | tuple[str, ...] = ()) -> int:
        """Create a group owned by the token's user with ``accounts`` as members; its id."""
        body = {"topicName": topic_name, "accounts": ",".join(accounts)}
        data = await self._api._request("POST", self.url, self._api._headers(), body)
        try:
            return int(data["topicInfo"]["topicId"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ServerError(200, f"create answer has no usable topicId: {data!r}") from exc

    async def dismiss(self, topic_id: int) -> None:
        """Dismiss a group we own."""
        await self._api._request("DELETE", f"{self.url}/{int(topic_id)}", self._api._headers())

    def __repr__(self) -> str:
        return f"TopicClient({self.url!r})"
