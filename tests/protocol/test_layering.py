"""The layering rules of STYLE.md 2, kept honest by reading the source with ``ast``:
``mimc_rx.protocol`` does no I/O, and only the codec modules touch the generated ``_pb``."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "mimc_rx" / "protocol"
SOURCES = sorted(p for p in PROTOCOL.rglob("*.py") if "_pb" not in p.relative_to(PROTOCOL).parts)
FORBIDDEN = {
    "asyncio", "websockets", "reactivex", "rx", "socket", "ssl", "selectors", "httpx",
    "requests", "urllib", "http", "threading", "multiprocessing", "subprocess", "concurrent",
    "trio", "anyio", "pandas", "ipywidgets", "starlette", "uvicorn",
}  # fmt: skip
CODEC_MODULES = {"codec.py", "codec_base.py", "codec_uc.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                package = ".".join(path.relative_to(ROOT).with_suffix("").parts[: -node.level])
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_scan_sees_every_module() -> None:
    names = {p.name for p in SOURCES}
    assert {"framing.py", "crypto.py", "client.py", "server.py", "events.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_protocol_does_no_io(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_only_codec_modules_import_generated_code(path: Path) -> None:
    uses_pb = any("_pb" in m.split(".") or m.endswith("_pb2") for m in imported_modules(path))
    assert not uses_pb or path.name in CODEC_MODULES, f"{path.name} imports _pb"


def test_the_checker_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    sample = PROTOCOL / "_layering_probe.py"
    assert not sample.exists()
    fake = tmp_path / "probe.py"
    fake.write_text("import asyncio\nfrom websockets import connect\n", encoding="utf-8")
    assert {"asyncio", "websockets"} <= {m.split(".")[0] for m in imported_modules(fake)}


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed"
)
def test_generated_protobuf_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
