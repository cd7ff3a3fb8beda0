"""``GET /api``, the URL ``mimc-rx serve`` prints, answers with the routes it serves."""

from __future__ import annotations

import httpx

from mimc_rx.server import LocalServer


async def test_the_api_url_lists_the_routes() -> None:
    async with LocalServer(db=":memory:", port=0) as server, httpx.AsyncClient() as client:
        for path in ("/api", "/api/"):
            answer = await client.get(server.http_url + path)
            assert answer.status_code == 200
            body = answer.json()
            assert body["code"] == 200
            paths = {r["path"]: r["methods"] for r in body["data"]["routes"]}
            assert paths["/api/account/token"] == ["POST"]
            assert "/api/status" in paths
