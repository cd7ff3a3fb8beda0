"""What every REST route module shares: the JSON envelope, the request body, the caller.

Every answer of the MIMC REST APIs is the envelope of docs/protocol.md 8:
``{"code": 200, "message": "success", "data": ...}``, with every 64-bit id as a decimal string.
Like the cloud, refusals keep HTTP status 200 and put the error in ``code`` (400 bad request,
401 bad credentials, 403 not allowed, 404 unknown topic, 413 body too large, 500 operation
refused), so clients that only parse the JSON see every outcome.

The route modules (``rest_*``) and the application (:mod:`mimc_rx.server.rest`) import these
helpers from here, so no route module imports the module that imports it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from mimc_rx.server.auth import Caller
from mimc_rx.server.hub import Hub
from mimc_rx.server.validation import ApiError

__all__ = ["ClientLeft", "caller", "failure", "hub_of", "json_body", "success"]


class ClientLeft(Exception):
    """The client closed its connection before its request body was complete.

    Nobody is left to answer and it is no fault of ours: the application answers nothing and
    logs nothing (a login storm's clients give up by the hundred). The server counts it in its
    connection guard when one is installed as the app state's ``client_left`` callable.
    """


def success(data: Any = None) -> JSONResponse:
    """The success envelope (``code`` 200, ``message`` exactly "success", docs/protocol.md 8)."""
    return JSONResponse({"code": 200, "message": "success", "data": data})


def failure(code: int, message: str) -> JSONResponse:
    """The refusal envelope: ``code`` is the MIMC error code, HTTP status stays 200."""
    return JSONResponse({"code": code, "message": message, "data": None})


def hub_of(request: Request) -> Hub:
    """The hub serving this request."""
    hub: Hub = request.app.state.hub
    return hub


async def caller(request: Request) -> Caller:
    """Authenticate the request's ``token`` (or app credential) headers; ApiError 401 if not."""
    return await hub_of(request).tokens.authenticate(request.headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_body(request: Request) -> bytes:
    # Read at most max_request_body bytes, whatever Content-Length claims (or omits), within
    # the handshake timeout: a body that trickles in must not hold a connection for ever.
    config = hub_of(request).config
    limit = config.max_request_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.handshake_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"the body may be at most {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "the body did not arrive in time") from None
    except ClientDisconnect:
        client_left = getattr(request.app.state, "client_left", None)
        if client_left is not None:
            client_left()
        raise ClientLeft from None
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``.

    Raises:
        ApiError: 400 when the body is not a JSON object (NaN and Infinity are not JSON, and a
            nesting too deep for the parser is refused too); 413 when it is larger than
            ``ServerConfig.max_request_body``; 408 when it takes longer than
            ``ServerConfig.handshake_timeout`` to arrive.
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
