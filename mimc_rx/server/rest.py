"""The HTTP side of the server: the ASGI application that joins the gateway and the REST routes.

:func:`build_app` joins the websocket gateway (``/``) and the HTTP routes (``/api/...``) into
one ASGI application, served on one port. The routes live in the ``rest_*`` modules, one API
each; the envelope and the helpers they share are in :mod:`mimc_rx.server.rest_common`.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.gateway import Gateway, Receive, Scope, Send
from mimc_rx.server.hub import Hub
from mimc_rx.server.rest_common import ClientLeft, failure, hub_of, json_body, success
from mimc_rx.server.rest_contacts import routes as contact_routes
from mimc_rx.server.rest_history import routes as history_routes
from mimc_rx.server.rest_push import routes as push_routes
from mimc_rx.server.rest_topics import routes as topic_routes
from mimc_rx.server.rest_uctopic import routes as uctopic_routes
from mimc_rx.server.validation import ApiError

__all__ = ["MimcAsgiApp", "build_app"]

log = logging.getLogger(__name__)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    log.debug("%s %s refused: %s", request.method, request.url.path, exc)
    return failure(exc.code, exc.message)


async def _on_client_left(request: Request, exc: Exception) -> Response:
    # The client is gone (counted by the connection guard): nothing to answer, nothing to log.
    # Handled here, not by the catch-all below, whose exceptions starlette re-raises to uvicorn.
    return Response(status_code=400)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return failure(500, "internal error")


async def _token(request: Request) -> Response:
    # docs/protocol.md 8.1: the app's backend asks for a user's token with the app credentials.
    hub = hub_of(request)
    data = await hub.tokens.issue_for_request(await json_body(request))
    return success(data)


async def _expire_tokens(request: Request) -> Response:
    # Not in the cloud API: the app's backend (or the network lab) expires tokens it was given.
    return success(await hub_of(request).tokens.expire_for_request(await json_body(request)))


async def _status(request: Request) -> Response:
    hub = hub_of(request)
    return success(
        {
            "apps": [str(app_id) for app_id in hub.apps],
            "connections": len(hub.connections),
            "users": await hub.storage.count_users(),
        }
    )


async def _index(request: Request) -> Response:
    # What the URL printed by ``mimc-rx serve`` answers: every route, so it is a start.
    routes = [
        {"path": route.path, "methods": sorted(route.methods or ())}
        for route in request.app.routes
        if isinstance(route, Route) and route.path.startswith("/api/")
    ]
    return success({"server": "mimc-rx local server", "websocket": "/", "routes": routes})


def _routes() -> list[BaseRoute]:
    return [
        Route("/api", _index, methods=["GET"]),
        Route("/api/", _index, methods=["GET"]),
        Route("/api/account/token", _token, methods=["POST"]),
        Route("/api/account/token/", _token, methods=["POST"]),
        Route("/api/account/token/expire", _expire_tokens, methods=["POST"]),
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
            exception_handlers={
                ApiError: _on_api_error,
                ClientLeft: _on_client_left,
                Exception: _on_unexpected,
            },
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


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.close", "code": 1008})


def build_app(hub: Hub) -> MimcAsgiApp:
    """The ASGI application of a server whose state is ``hub``."""
    return MimcAsgiApp(hub)
