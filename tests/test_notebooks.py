"""The notebooks in notebooks/ run top to bottom in a fresh kernel, against the local server.

Each notebook is executed with nbclient in a new ipykernel kernel of the interpreter running the
tests (a kernel spec written for ``sys.executable`` at run time, so a fresh CI virtual
environment needs no ``ipykernel install`` and no other Python's ``python3`` spec can get in the
way). Any cell error fails the test. The run happens in a temporary
directory, so the committed notebooks and the working tree are left alone.

To refresh the outputs committed with the notebooks (they are committed executed, so they read
well on GitHub)::

    python tests/test_notebooks.py            # re-executes every notebook in place
    python tests/test_notebooks.py 03_timing  # or just one
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

__all__: list[str] = []

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
#: Seconds a single cell may take before the run fails (scaled on slow machines).
CELL_TIMEOUT = 60.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))


KERNEL_NAME = "mimc-rx-python"


def _kernel_spec_dir() -> Path:
    """A kernel spec for *this* interpreter, in a directory of its own.

    A ``python3`` spec found first in the user's Jupyter directory could start another Python
    that lacks mimc_rx; a spec named for us, put first on ``JUPYTER_PATH``, cannot.
    """
    root = Path(tempfile.mkdtemp(prefix="mimc-rx-kernel-"))
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (mimc-rx tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def execute(path: Path, workdir: Path) -> object:
    """Execute the notebook at ``path`` in a fresh kernel, with ``workdir`` as its cwd.

    The notebook's own metadata (its ``python3`` kernel spec) is left as it was.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    kernelspec = notebook.metadata.get("kernelspec")
    root = _kernel_spec_dir()
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), previous]))
    try:
        client = NotebookClient(
            notebook,
            kernel_name=KERNEL_NAME,
            timeout=int(CELL_TIMEOUT),
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    finally:
        if previous is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = previous
        shutil.rmtree(root, ignore_errors=True)
    if kernelspec is not None:
        notebook.metadata["kernelspec"] = kernelspec
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


def test_the_four_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_operators.ipynb",
        "03_timing.ipynb",
        "04_network_lab.ipynb",
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
