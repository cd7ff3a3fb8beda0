"""Notebook behaviour in a real kernel (nbclient, as ``test_notebooks.py`` runs notebooks), and
what the committed notebooks promise: the quickstart's chat panel outlives Run All.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _execute(cells: list[str], tmp_path: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from .test_notebooks import execute

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in cells]
    path = tmp_path / "probe.ipynb"
    nbformat.write(notebook, path)
    return execute(path, tmp_path)


def _outputs(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            parts.append(f"ERROR {output.get('ename')}: {output.get('evalue')}")
        parts.append(output.get("text", ""))
        parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


SETUP = """\
%load_ext mimc_rx
from reactivex.subject import Subject
from mimc_rx.jupyter import display_stream, subscribe

answers = []
questions = Subject()
"""

# The same source twice: without a front end's cell id (nbclient sends none) the cell's
# source is its key, so the second run replaces the first run's subscription.
ANSWER = "subscribe(questions, lambda q: answers.append(f'answer to {q}'))"

CHECK = """\
questions.on_next("q1")
print(answers, len(questions.observers))
"""

OUTPUT = """\
import asyncio
display_stream(questions, title="questions")
questions.on_next("q2")
await asyncio.sleep(0.05)
"""


@pytest.mark.notebook
def test_helpers_in_a_real_kernel(tmp_path: Path) -> None:
    executed = _execute([SETUP, ANSWER, ANSWER, CHECK, OUTPUT, "%mimc", "%mimc stop"], tmp_path)
    cells = executed.cells
    assert "ERROR" not in "".join(_outputs(c) for c in cells)
    # Run twice, answered once: the re-run replaced the subscription.
    assert "['answer to q1'] 1" in _outputs(cells[3])
    # display_stream rendered into its own cell, and the update reached it.
    shown = _outputs(cells[4])
    assert "questions: 1 values" in shown
    assert "&#x27;q2&#x27;" in shown or "'q2'" in shown
    assert "StreamOutput" not in shown  # no second, textual copy of the output
    listing = _outputs(cells[5])
    assert "subscription 1" in listing
    assert "1 values" in listing
    assert "stopping:" in _outputs(cells[6])


def _notebook(name: str) -> Any:
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_the_quickstart_keeps_its_chat_panel_after_run_all() -> None:
    cells = [c for c in _notebook("01_quickstart").cells if c.cell_type == "code"]
    panel = next(c for c in cells if "ChatPanel(alice)" in c.source)
    bundles = [o.get("data", {}) for o in panel.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in b for b in bundles)
    teardown = cells[-1]
    code = [line for line in teardown.source.splitlines() if not line.startswith("#")]
    assert code == ["%mimc"], "the last cell must not close the panel on Run All"
    listing = _outputs(teardown)
    assert "panel alice" in listing
    assert "server" in listing


@pytest.mark.parametrize("name", ["01_quickstart", "02_operators", "03_timing"])
def test_the_notebooks_use_the_helpers(name: str) -> None:
    source = "\n".join(c.source for c in _notebook(name).cells if c.cell_type == "code")
    assert "keep(LocalServer(" in source  # re-running the server cell stops the old server
    assert not re.search(r"subscribe\([^\n]*print", source)  # display_stream instead


def test_the_operators_bar_chart_has_both_axis_labels() -> None:
    source = next(c.source for c in _notebook("02_operators").cells if "plot.bar(" in c.source)
    assert "xlabel=" in source
    assert "ylabel=" in source
