"""The lab over a server process: a SIGKILL and restart in the middle of a load."""

from __future__ import annotations

from pathlib import Path

from mimc_rx.lab import NetworkLab


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
