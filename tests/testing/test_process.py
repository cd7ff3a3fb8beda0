"""ServerProcess: a real server child killed with SIGKILL and restarted under a real client."""

from __future__ import annotations

import asyncio
import base64
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from mimc_rx import Backoff, MIMCUser
from mimc_rx.testing import FaultProxy, ServerProcess, ServerStartError

from .conftest import TIMEOUT, eventually

FAST_RECONNECT = Backoff(initial=0.05, max_delay=0.5, jitter=0.0)


async def _history(server: ServerProcess, account: str, other: str) -> list[dict[str, str]]:
    """The stored P2P conversation of ``account`` with ``other``, read over HTTP, oldest first."""
    app = server.app
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http:
        answer = await http.post(
            "/api/msg/p2p/queryOnCount",
            headers={"appKey": app.app_key, "appSecret": app.app_secret, "appAccount": account},
            json={
                "appId": str(app.app_id),
                "fromAccount": account,
                "toAccount": other,
                "utcToTime": int(time.time() * 1000) + 60_000,
                "count": 100,
            },
        )
    assert answer.status_code == 200, answer.text
    messages: list[dict[str, str]] = answer.json()["data"]["messages"]
    return messages


async def test_kill_9_and_restart_keep_the_port_the_db_and_the_client(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "chat.db")
    await server.start()
    try:
        first_pid, port = server.pid, server.port
        assert port != 0
        assert server.ws_url == f"ws://127.0.0.1:{port}/"
        async with FaultProxy.for_url(server.ws_url) as proxy:
            await proxy.route("alice")
            alice = MIMCUser(
                "alice",
                app_id=server.app.app_id,
                token_fetcher=server.token_fetcher("alice"),
                url=proxy.url("alice"),
                reconnect=FAST_RECONNECT,
            )
            disconnects: list[object] = []
            alice.disconnects.subscribe(disconnects.append)
            await asyncio.wait_for(alice.login(), TIMEOUT)
            kept = alice.send_message("bob", "kept across kill -9")
            await alice.ack(kept, timeout=TIMEOUT)

            proxy.cut("alice")  # a network cut first: the client comes back by itself
            await eventually(lambda: len(disconnects) == 1 and alice.is_logged_in)

            await server.kill()
            assert server.returncode == -signal.SIGKILL
            await eventually(lambda: len(disconnects) == 2)
            await server.start()  # same port, same database
            assert (server.port, server.starts) == (port, 2)
            assert server.pid not in (None, first_pid)
            await eventually(lambda: alice.is_logged_in)
            after = alice.send_message("bob", "after the restart")
            await alice.ack(after, timeout=TIMEOUT)

            history = await _history(server, "alice", "bob")
            assert [(m["packetId"], base64.b64decode(m["payload"])) for m in history] == [
                (kept, b"kept across kill -9"),
                (after, b"after the restart"),
            ]
            await alice.logout()
            assert proxy.stats("alice").connections_total >= 3
    finally:
        status = await server.stop()
    assert status == 0  # graceful: SIGTERM handled
    assert server.tracebacks() == []
    assert server.log_text().count("mimc-rx server ready") == 2


async def test_a_failed_start_reports_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ServerProcess(tmp_path / "chat.db", port=taken.getsockname()[1])
        with pytest.raises(ServerStartError, match="exited during startup") as failure:
            await server.start()
    assert failure.value.returncode == 1
    assert "cannot start the server" in failure.value.log_tail
    assert not server.is_running


def test_a_memory_database_cannot_be_restarted() -> None:
    with pytest.raises(ValueError, match="database file"):
        ServerProcess(":memory:")
