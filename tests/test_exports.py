"""Keep the public surface honest: exports resolve, every module declares __all__, and
``import mimc_rx`` stays light (heavy optional parts are imported only when used)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mimc_rx

PACKAGE = Path(mimc_rx.__file__).parent
MODULES = sorted(
    p for p in PACKAGE.rglob("*.py") if "_pb" not in p.parts and p.name not in {"__main__.py"}
)


def test_every_top_level_export_resolves() -> None:
    missing = [name for name in mimc_rx.__all__ if not hasattr(mimc_rx, name)]
    assert missing == []
    assert len(set(mimc_rx.__all__)) == len(mimc_rx.__all__)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_declares_all(path: Path) -> None:
    tree = ast.parse(path.read_text())
    names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    assert "__all__" in names, f"{path} has no __all__"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_all_names_exist(path: Path) -> None:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    name = ".".join(rel.parts).removesuffix(".__init__")
    module = importlib.import_module(name)
    assert [n for n in getattr(module, "__all__", []) if not hasattr(module, n)] == []


def test_import_is_light() -> None:
    code = (
        "import sys, mimc_rx; "
        "heavy = {'pandas', 'ipywidgets', 'starlette', 'uvicorn', 'matplotlib', 'pyarrow'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
