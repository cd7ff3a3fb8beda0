"""``serve --storage --broker --reuse-port``: mistakes are one line on stderr, never a traceback.

No engine is needed: these are the cases that fail before, or while, the engines are reached.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mimc_rx.testing.engines import free_port


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimc_rx", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if "error" in line]


@pytest.mark.parametrize(
    "args",
    [
        ["--reuse-port"],
        ["--reuse-port", "--db", "chat.db", "--broker", "redis://127.0.0.1:6379/0"],
        ["--reuse-port", "--storage", "postgresql://h/db"],
    ],
)
def test_a_shared_port_needs_shared_state(args: list[str]) -> None:
    result = _serve(*args)
    assert result.returncode == 1
    assert _error_lines(result) == [
        "mimc-rx: error: --reuse-port: processes that share a port must share their state: "
        "give --storage postgresql://... and --broker redis://..."
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--storage", "mysql://h/db"], "--storage"), (["--broker", "amqp://h"], "--broker")],
)
def test_an_unknown_url_scheme_is_refused_by_the_parser(args: list[str], option: str) -> None:
    result = _serve(*args)
    assert result.returncode == 2
    assert f"argument {option}: " in result.stderr
    assert "is not a URL starting with" in result.stderr


def test_db_and_storage_exclude_each_other() -> None:
    result = _serve("--db", "chat.db", "--storage", "postgresql://h/db")
    assert result.returncode == 2
    assert "not allowed with argument --db" in result.stderr


def test_a_sqlite_storage_url_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "chat.db"
    result = _serve("--storage", f"sqlite://{missing}")
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"mimc-rx: error: --storage {missing}: the directory {missing.parent} does not exist"
    ]


def test_a_broker_nobody_listens_on_is_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = _serve("--db", str(tmp_path / "chat.db"), "--broker", url)
    assert result.returncode == 1
    (line,) = _error_lines(result)
    assert line.startswith("mimc-rx: error: --broker: ConnectionError: "), line
