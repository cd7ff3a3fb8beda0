"""A throwaway JupyterLab on 127.0.0.1 and a headless Debian Chromium driven by Playwright.

Used by the browser tests. Everything lives in one temporary directory: the notebook
directory, Jupyter's config/data/runtime directories (so the user's own kernels and settings
never leak in) and the user settings that silence JupyterLab's news toasts. Token auth is off;
the server listens on 127.0.0.1 only, on a port the OS picks. Nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "JupyterLab",
    "jupyter_lab",
    "write_notebook",
]

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium; the tests never download a browser."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}


@dataclass
class JupyterLab:
    """A running JupyterLab server."""

    url: str
    """Base URL, ending with ``/``."""
    root: Path
    """The notebook directory."""
    process: subprocess.Popen[bytes]
    log: Path

    def lab_url(self, notebook: str) -> str:
        """The URL that opens ``notebook`` in JupyterLab."""
        return f"{self.url}lab/tree/{notebook}"

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's log, for failure messages."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def write_notebook(path: Path, cells: list[str]) -> None:
    """Write a nbformat-4 notebook of code cells, with the default Python 3 kernel."""
    notebook: dict[str, Any] = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{index}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for index, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


def _server_info(runtime: Path, pid: int) -> dict[str, Any] | None:
    found = runtime / f"jpserver-{pid}.json"
    if not found.exists():
        return None
    try:
        info: dict[str, Any] = json.loads(found.read_text())
    except json.JSONDecodeError:  # still being written
        return None
    return info


@contextmanager
def jupyter_lab(
    base: Path, *, timeout: float, env: dict[str, str] | None = None
) -> Iterator[JupyterLab]:
    """Start JupyterLab with ``base / "notebooks"`` as its root; stop it (and its kernels) after."""
    root = base / "notebooks"
    dirs = {
        name: base / name
        for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
    }
    for path in [root, *dirs.values()]:
        path.mkdir(parents=True, exist_ok=True)
    for name, values in _QUIET_SETTINGS.items():
        target = dirs["settings"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    child_env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_root=True",
        "--LabApp.extension_manager=readonly",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
    ]
    log = base / "jupyterlab.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=child_env, cwd=root
        )
    lab: JupyterLab | None = None
    try:
        deadline = time.monotonic() + timeout
        while lab is None:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not start:\n{log.read_text(errors='replace')}")
            info = _server_info(dirs["runtime"], process.pid)
            if info is not None and _answers(f"http://127.0.0.1:{info['port']}/api/status"):
                lab = JupyterLab(
                    url=f"http://127.0.0.1:{info['port']}/", root=root, process=process, log=log
                )
            else:
                time.sleep(0.1)
        yield lab
    finally:
        _stop(process, timeout=timeout)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    # SIGTERM is Jupyter's "stop now": it shuts its kernels down before exiting.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
