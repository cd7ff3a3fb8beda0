"""``python -m mimc_rx load`` against the local server (a small load)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mimc_rx.lab.frames import MESSAGE_COLUMNS
from mimc_rx.server import LocalServer


def test_load_command_against_the_local_server(tmp_path: Path) -> None:
    runner = LocalServer(db=":memory:").start_in_thread()
    try:
        out = tmp_path / "run.parquet"
        proc = subprocess.run(
            [
                sys.executable, "-m", "mimc_rx", "load",
                "--users", "6", "--rate", "60", "--seconds", "1", "--seed", "1",
                "--url", runner.ws_url, "--out", str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        runner.stop()
    assert proc.returncode == 0, proc.stderr
    assert "achieved delivery rate" in proc.stdout
    assert re.search(r"^lost \(acked, never delivered\) +0$", proc.stdout, re.M)
    assert re.search(r"^duplicated +0$", proc.stdout, re.M)
    frame = pd.read_parquet(out)
    assert len(frame) == 60
    assert list(frame.columns) == list(MESSAGE_COLUMNS)
    assert (frame.outcome == "delivered").all()
    assert "load" in proc.stderr  # the progress bar went to stderr


def test_load_command_help_lists_its_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mimc_rx", "load", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for option in ("--users", "--rate", "--seconds", "--url", "--out"):
        assert option in proc.stdout
