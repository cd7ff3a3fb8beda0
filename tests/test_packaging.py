"""What a source release carries: the notebooks, the licence, and one version number."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

import mimc_rx

ROOT = Path(__file__).resolve().parents[1]


def test_the_sdist_carries_the_notebooks_and_the_license(tmp_path: Path) -> None:
    builders = pytest.importorskip("hatchling.builders.sdist")
    [archive] = builders.SdistBuilder(str(ROOT)).build(
        directory=str(tmp_path), versions=["standard"]
    )
    assert Path(archive).name == f"mimc_rx-{mimc_rx.__version__}.tar.gz"
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for notebook in ("01_quickstart", "02_operators", "03_timing"):
        assert f"notebooks/{notebook}.ipynb" in names
    assert {"LICENSE", "README.md", "mimc_rx/__init__.py"} <= names


def test_the_license_file_is_the_one_pyproject_names() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "MIT"' in pyproject
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
