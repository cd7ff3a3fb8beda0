"""The HTTP side of the server: the ASGI application, the JSON envelope and the token service.

Every answer of the MIMC REST APIs is the envelope of docs/protocol.md 8:
``{"code": 200, "message": "success", "data": ...}``, with every 64-bit id as a decimal string.
Like the cloud, refusals keep HTTP status 200 and put the error in ``code`` (400 bad request,
401 bad credentials, 403 not allowed, 404 unknown topic, 500 operation refused), so clients that
only parse the JSON see every outcome.

:func:`build_app` joins the websocket gateway (``/``) and the HTTP routes (``/api/...``) into
one ASGI application, served on one port.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.auth import ApiError, Caller
from mimc_rx.server.gateway import Gateway, Message, Receive, Scope, Send
from mimc_rx.server.hub import Hub

__all__ = [
    "MimcAsgiApp",
    "build_app",
    "caller",
    "hub_of",
    "json_body",
    "parse_id",
    "success",
]

log = logging.getLogger(__name__)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_INT_TEXT = 21  # "-9223372036854775808" and a little slack; longer text is not an int64


def parse_id(value: Any, name: str) -> int:
    """A client-supplied id or integer: a JSON int or a decimal string, in signed 64-bit range.

    Why: every id and time the APIs accept ends in SQLite (signed 64-bit) or in arithmetic; a
    bool, a float (including the NaN and Infinity Python's JSON reader accepts), a 30-digit
    number or garbage must be a 400 refusal, never an OverflowError answered as 500.

    Raises:
        ApiError: 400 naming ``name`` when the value is not such an integer.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value.strip()) <= _MAX_INT_TEXT:
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is None or not _INT64_MIN <= number <= _INT64_MAX:
        raise ApiError(400, f"{name} must be a 64-bit integer")
    return number


def success(data: Any = None) -> JSONResponse:
    """The success envelope (``code`` 200, ``message`` exactly "success", docs/protocol.md 8)."""
    return JSONResponse({"code": 200, "message": "success", "data": data})


def _failure(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": None})


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    log.debug("%s %s refused: %s", request.method, request.url.path, exc)
    return _failure(exc.code, exc.message)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _failure(500, "internal error")


def hub_of(request: Request) -> Hub:
    """The hub serving this request."""
    hub: Hub = request.app.state.hub
    return hub


def caller(request: Request) -> Caller:
    """Authenticate the request's ``token`` (or app credential) headers; ApiError 401 if not."""
    return hub_of(request).tokens.authenticate(request.headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_body(request: Request) -> bytes:
    # Read at most max_request_body bytes, whatever Content-Length claims (or omits).
    limit = hub_of(request).config.max_request_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``.

    Raises:
        ApiError: 400 when the body is not a JSON object (NaN and Infinity are not JSON, and a
            nesting too deep for the parser is refused too); 413 when it is larger than
            ``ServerConfig.max_request_body``.
    """
    raw = await _read_body(request)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


async def _token(request: Request) -> Response:
    # docs/protocol.md 8.1: the app's backend asks for a user's token with the app credentials.
    hub = hub_of(request)
    data = hub.tokens.issue_for_request(await json_body(request))
    hub.flush()
    return success(data)


async def _status(request: Request) -> Response:
    hub = hub_of(request)
    return success(
        {
            "apps": [str(app_id) for app_id in hub.apps],
            "connections": len(hub.connections),
            "users": len(hub.store.users),
        }
    )


def _routes() -> list[BaseRoute]:
    from mimc_rx.server.rest_contacts import routes as contact_routes
    from mimc_rx.server.rest_history import routes as history_routes
    from mimc_rx.server.rest_push import routes as push_routes
    from mimc_rx.server.rest_topics import routes as topic_routes
    from mimc_rx.server.rest_uctopic import routes as uctopic_routes

    return [
        Route("/api/account/token", _token, methods=["POST"]),
        Route("/api/account/token/", _token, methods=["POST"]),
        Route("/api/status", _status, methods=["GET"]),
        *uctopic_routes(),
        *topic_routes(),
        *history_routes(),
        *contact_routes(),
        *push_routes(),
    ]


class MimcAsgiApp:
    """One ASGI application: websocket at ``/`` to the gateway, everything else to Starlette."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.gateway = Gateway(hub)
        self.http = Starlette(
            routes=_routes(),
            exception_handlers={ApiError: _on_api_error, Exception: _on_unexpected},
        )
        self.http.state.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if scope.get("path", "/") in ("/", ""):
                await self.gateway(scope, receive, send)
            else:
                await _refuse_websocket(receive, send)
            return
        await self.http(scope, receive, send)


async def _refuse_websocket(receive: Callable[[], Awaitable[Message]], send: Send) -> None:
    await receive()
    await send({"type": "websocket.close", "code": 1008})


def build_app(hub: Hub) -> MimcAsgiApp:
    """The ASGI application of a server whose state is ``hub``."""
    return MimcAsgiApp(hub)
