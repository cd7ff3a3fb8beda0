"""Starting the server: the async context manager, the background thread, and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mimc_rx.protocol.events import P2PMessage, ServerAck
from mimc_rx.server import DEMO_APP, LocalServer

from .conftest import APP, TIMEOUT, login_http
from .wire import WireClient


async def test_token_fetcher_logs_a_client_in(tmp_path: Path) -> None:
    async with LocalServer(db=tmp_path / "x.db", apps=[APP]) as server:
        assert server.app == APP
        assert server.ws_url == f"ws://127.0.0.1:{server.port}/"
        assert server.http_url == f"http://127.0.0.1:{server.port}"
        assert server.port != 0
        fetch = server.token_fetcher("alice")
        answer = await fetch()
        assert answer["code"] == 200
        assert answer["data"]["appId"] == str(APP.app_id)
        assert (await fetch())["data"]["token"] != answer["data"]["token"]
        client = WireClient(server.ws_url, "alice")
        await client.login(answer)
        await client.close()
    assert not server.is_running


async def test_demo_app_by_default_and_in_memory_db() -> None:
    async with LocalServer(db=":memory:") as server:
        assert server.apps == (DEMO_APP,)
        answer = await server.token_fetcher("zoe")()
        assert answer["data"]["appId"] == str(DEMO_APP.app_id)
        with pytest.raises(KeyError):
            server.token_fetcher("zoe", app=12345)


def test_thread_runner_serves_a_plain_script(tmp_path: Path) -> None:
    with LocalServer(db=tmp_path / "x.db", apps=[APP]).start_in_thread() as server:
        answer = httpx.post(
            f"{server.http_url}/api/account/token",
            json={
                "appId": str(APP.app_id),
                "appKey": APP.app_key,
                "appSecret": APP.app_secret,
                "appAccount": "alice",
            },
            timeout=TIMEOUT,
        ).json()
        assert answer["code"] == 200

        async def roundtrip() -> str:
            alice = WireClient(server.ws_url, "alice")
            bob = WireClient(server.ws_url, "bob")
            await alice.login(await server.token_fetcher("alice")())
            await bob.login(await server.token_fetcher("bob")())
            alice.session.send_p2p("bob", "from a script", now=alice.now())
            await alice.flush()
            await alice.next(ServerAck)
            text = (await bob.next(P2PMessage)).text
            await alice.close()
            await bob.close()
            return text

        assert asyncio.run(roundtrip()) == "from a script"
    assert not server.server.is_running


def test_thread_runner_reports_startup_errors(tmp_path: Path) -> None:
    with LocalServer(db=tmp_path / "x.db").start_in_thread() as running:
        taken = LocalServer(db=tmp_path / "y.db", port=running.server.port)
        with pytest.raises(OSError):  # noqa: PT011 - the bind error of the busy port
            taken.start_in_thread()


def _serve(tmp_path: Path, db: str, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``python -m mimc_rx serve --port 0``; returns the process and its two URLs."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimc_rx", "serve", "--port", "0", "--db", db, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the ready line (or EOF if it died)
    match = re.search(r"(ws://\S+) (http://\S+)/api", line)
    if not match:
        proc.kill()
        proc.wait()
        raise AssertionError(f"no ready line: {line!r}")
    return proc, match.group(1), match.group(2)


def test_cli_serve_ready_line_token_and_sigterm(tmp_path: Path) -> None:
    proc, ws_url, http_url = _serve(tmp_path, str(tmp_path / "c.db"))
    try:
        assert proc.stdout is not None
        assert ws_url.startswith("ws://127.0.0.1:")
        answer = httpx.post(
            f"{http_url}/api/account/token",
            json={
                "appId": str(DEMO_APP.app_id),
                "appKey": DEMO_APP.app_key,
                "appSecret": DEMO_APP.app_secret,
                "appAccount": "alice",
            },
            timeout=TIMEOUT,
        ).json()
        assert answer["code"] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT * 2) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert DEMO_APP.app_secret in log  # the demo credentials are printed at start
        assert proc.stdout.read() == ""  # one line on stdout, nothing else
        assert (tmp_path / "c.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_acked_message_survives_kill_9(tmp_path: Path) -> None:
    db = str(tmp_path / "k.db")
    app = ["--app", f"{APP.app_id}:{APP.app_key}:{APP.app_secret}:{APP.package}"]

    async def token(http_url: str, account: str) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=http_url, timeout=TIMEOUT) as http:
            return (await login_http(http, account)).answer

    async def send(ws_url: str, http_url: str) -> list[ServerAck]:
        alice = WireClient(ws_url, "alice")
        await alice.login(await token(http_url, "alice"))
        for i in range(20):
            alice.session.send_p2p("bob", f"m{i}", now=alice.now())
        await alice.flush()
        await alice.next(ServerAck, 20)
        return alice.of(ServerAck)  # the connection is left open: the server dies under it

    async def receive(ws_url: str, http_url: str) -> list[str]:
        bob = WireClient(ws_url, "bob")
        await bob.login(await token(http_url, "bob"))
        await bob.wait(lambda: len(bob.of(P2PMessage)) >= 20)
        await bob.close()
        return [m.text for m in bob.of(P2PMessage)]

    proc, ws_url, http_url = _serve(tmp_path, db, *app)
    try:
        acks = asyncio.run(send(ws_url, http_url))
        assert all(a.ok for a in acks)
        proc.send_signal(signal.SIGKILL)  # no shutdown, no final commit
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc, ws_url, http_url = _serve(tmp_path, db, *app)
    try:
        assert asyncio.run(receive(ws_url, http_url)) == [f"m{i}" for i in range(20)]
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT * 2)
