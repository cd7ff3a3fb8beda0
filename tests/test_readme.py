"""The README's Python blocks run as written, in order.

The blocks form one notebook (top-level ``await``, ``%`` magics, a cell's last expression
shown), executed with nbclient in a fresh kernel as ``tests/test_notebooks.py`` does; a block
after a ``<!-- readme-test: script -->`` line is a plain script and runs in its own process.
A README edit that breaks an example, or that makes a later block depend on state an earlier
one tore down, fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCRIPT_MARK = "<!-- readme-test: script -->"
_BLOCK = re.compile(r"(?P<mark><!-- readme-test: script -->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """``("notebook" | "script", code)`` for each Python block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [
        ("script" if m.group("mark") else "notebook", m.group("code"))
        for m in _BLOCK.finditer(text)
    ]


def test_the_readme_has_both_kinds_of_blocks() -> None:
    kinds = [kind for kind, _code in readme_blocks()]
    assert kinds.count("script") == 1
    assert kinds.count("notebook") >= 6


def test_the_script_blocks_run(tmp_path: Path) -> None:
    for number, (kind, code) in enumerate(readme_blocks()):
        if kind != "script":
            continue
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, f"block {number}:\n{result.stderr}"
        assert "hi from a script" in result.stdout
        assert "Traceback" not in result.stderr


@pytest.mark.notebook
def test_the_notebook_blocks_run_in_order(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from .test_notebooks import execute

    cells = [code for kind, code in readme_blocks() if kind == "notebook"]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "readme.ipynb"
    nbformat.write(notebook, path)
    executed: Any = execute(path, tmp_path)
    errors = [
        f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(executed.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    texts = [
        "".join(str(v) for v in output.get("data", {}).values()) + output.get("text", "")
        for cell in executed.cells
        for output in cell.get("outputs", [])
    ]
    joined = "\n".join(texts)
    assert "are you there?" in joined
    assert "count 2" in joined
    # The latency summary is the last expression of its block: shown, not thrown away.
    summary = next(i for i, code in enumerate(cells) if "latency_summary(" in code)
    results = [o for o in executed.cells[summary].outputs if o.output_type == "execute_result"]
    assert results, "the latency summary was not displayed"
    assert "p99" in str(results[0]["data"])
    # The chat panel is shown online (the users are still logged in when it is built).
    panel = next(i for i, code in enumerate(cells) if "ChatPanel(alice)" in code)
    shown = [str(o.get("data", {}).get("text/plain", "")) for o in executed.cells[panel].outputs]
    assert any("online" in text for text in shown), shown
