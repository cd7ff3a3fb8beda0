"""The command line's polish: --version, readable --help, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import mimc_rx
from mimc_rx.__main__ import main


def test_version_is_the_package_metadata_version() -> None:
    assert mimc_rx.__version__ == metadata.version("mimc-rx")


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mimc-rx {mimc_rx.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_has_no_markup_and_no_broken_words(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # narrow, so that lines wrap
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "``" not in out
    assert not any(line.rstrip().endswith("-") for line in out.splitlines())
    assert "mimc-rx" in out or "built-in" in out


def test_a_bad_db_path_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "chat.db"
    result = subprocess.run(
        [sys.executable, "-m", "mimc_rx", "serve", "--port", "0", "--db", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"mimc-rx: error: --db {missing}: the directory {missing.parent} does not exist"
    ]


def test_a_directory_as_db_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--db", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mimc-rx: error: --db {tmp_path}: is a directory, not a database file"
    )


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_serve_and_demo_without_the_server_extra_say_what_to_install(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "starlette", None)  # as if not installed
    assert main([command]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'pip install "mimc-rx[server]"' in err
    assert "starlette" in err
