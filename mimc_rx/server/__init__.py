"""The local MIMC server: websocket gateway, token service, REST APIs and storage, on one port.

Wire-compatible with the MIMC cloud as docs/protocol.md describes it, so the official web SDK and
mimc-rx's own client both work against it. Start it from the shell with
``python -m mimc_rx serve``, or from Python::

    from mimc_rx.server import LocalServer

    async with LocalServer(db=":memory:") as server:
        fetch = server.token_fetcher("alice")

The heavy parts (starlette, uvicorn) are imported only when a server starts.
"""

from __future__ import annotations

from mimc_rx.server.config import DEMO_APP, AppConfig, ServerConfig, parse_app_spec
from mimc_rx.server.runner import LocalServer, ServerThread, TokenFetcher

__all__ = [
    "DEMO_APP",
    "AppConfig",
    "LocalServer",
    "ServerConfig",
    "ServerThread",
    "TokenFetcher",
    "parse_app_spec",
]
