"""The notebooks in notebooks/ run top to bottom in a fresh kernel, against the local server.

Each notebook is executed with nbclient in a new ``python3`` kernel of the interpreter running
the tests (jupyter_client starts a kernel spec whose command is ``python`` with
``sys.executable``, and falls back to ipykernel's built-in spec when none is installed, as in a
fresh CI virtual environment). Any cell error fails the test. The run happens in a temporary
directory, so the committed notebooks and the working tree are left alone.

To refresh the outputs committed with the notebooks (they are committed executed, so they read
well on GitHub)::

    python tests/test_notebooks.py            # re-executes every notebook in place
    python tests/test_notebooks.py 03_timing  # or just one
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

__all__: list[str] = []

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
#: Seconds a single cell may take before the run fails (scaled on slow machines).
CELL_TIMEOUT = 60.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))


def execute(path: Path, workdir: Path) -> object:
    """Execute the notebook at ``path`` in a fresh kernel, with ``workdir`` as its cwd."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=int(CELL_TIMEOUT),
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = execute(path, tmp_path)
    errors = [
        output
        for cell in notebook.cells  # type: ignore[attr-defined]
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []


def test_the_three_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_operators.ipynb",
        "03_timing.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_committed_executed(path: Path) -> None:
    """Every code cell ran, in order, in one session: the outputs on GitHub are real."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    counts = [c.get("execution_count") for c in notebook.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []


def main(argv: list[str]) -> None:
    """Re-execute notebooks in place (all, or those whose name contains an argument)."""
    import nbformat

    chosen = [p for p in NOTEBOOKS if not argv or any(a in p.name for a in argv)]
    for path in chosen:
        print(f"executing {path.name} ...", flush=True)
        notebook = execute(path, NOTEBOOKS_DIR)
        nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])
