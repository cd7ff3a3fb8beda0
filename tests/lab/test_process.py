"""The lab over a server process: a SIGKILL and restart in the middle of a load."""

from __future__ import annotations

from pathlib import Path

import httpx

from mimc_rx import MIMCUser
from mimc_rx.lab import NetworkLab

from .conftest import back_online_with_a_new_token


async def test_restart_mid_run_everyone_reconnects_nothing_acked_is_lost(tmp_path: Path) -> None:
    lab = await NetworkLab.start(tmp_path / "lab.db")  # the lab owns this server process
    try:
        run = await lab.load(
            users=8,
            rate=80,
            seconds=4,
            progress=False,
            seed=11,
            actions={1.0: lab.restart_server},
        )
        s = run.stats()
        assert all(n >= 2 for n in run.connections.values())  # each user logged in again
        assert s.lost == 0  # acked means committed: a kill -9 does not undo it
        assert s.unsent == 0
        faults = run.faults()
        assert list(faults["kind"]) == ["restart"]
        assert faults["detail"].iloc[0] == "SIGKILL"
        assert faults["duration"].iloc[0] > 0
        assert lab.server.tracebacks() == []  # type: ignore[union-attr]
    finally:
        await lab.close()
    assert not lab.server.is_running


async def test_expire_tokens_reaches_a_server_process(tmp_path: Path) -> None:
    # The token table is in the child process: the lab asks its admin route.
    lab = await NetworkLab.start(tmp_path / "lab.db")
    try:
        bob = await lab.user("bob", login=True)
        old = bob.token
        assert old is not None
        carol_answer = await lab.tokens("carol")  # a token carol will try to BIND with
        assert [f.detail for f in [await lab.expire_tokens(n) for n in ("bob", "carol")]] == [
            "1",
            "1",
        ]
        # The expired token: refused at BIND with token-expired, and by the REST APIs.
        stale = MIMCUser(
            "carol",
            app_id=lab.app.app_id,
            token_fetcher=lambda: carol_answer,
            url=await lab.route("carol"),
        )
        try:
            status = await stale.login()
        finally:
            await stale.close()
        assert (status.online, status.err_type, status.err_reason) == (
            False,
            "token-expired",
            "token-expired",
        )
        async with httpx.AsyncClient(base_url=lab.server.http_url) as http:
            answer = (await http.get("/api/contact/", headers={"token": old})).json()
        assert (answer["code"], answer["message"]) == (401, "token expired")
        # bob stays bound until his connection goes; then he fetches a new token and is back.
        assert bob.is_logged_in
        lab.cut("bob")
        await back_online_with_a_new_token(bob, old)
        assert lab.server.tracebacks() == []  # type: ignore[union-attr]
    finally:
        await lab.close()
