"""Every bench script still runs: its ``--quick`` mode, end to end, in a few seconds.

The figures of a quick run mean nothing; what this catches is a bench that no longer starts
(an import moved, a renamed name, a server option gone) or no longer prints its comparison.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mimc_rx.testing.engines import find_postgres_bin, find_redis_server

BENCH = Path(__file__).resolve().parents[2] / "bench"

# script -> a piece of its summary that only a completed run prints
SCRIPTS = {
    "_baseline.py": "burst msg/s",
    "server_bench.py": "P2P store=true msg/s",
    "client_bench.py": "bob's CPU",
    "codec_bench.py": "x echo",
    "frames_bench.py": "events_to_frame",
    "scale_bench.py": "of sqlite",
    "durability.py": "runs with 0 lost, 0 duplicated",
    "login_storm.py": "server tracebacks: 0",
}
NEEDS_ENGINES = {"scale_bench.py"}  # PostgreSQL and redis-server from Debian's packages


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_quick_run(script: str) -> None:
    if script in NEEDS_ENGINES and not (find_postgres_bin() and find_redis_server()):
        pytest.skip("PostgreSQL or redis-server is not installed (.ci/run installs them)")
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SCRIPTS[script] in done.stdout, done.stdout[-3000:]
