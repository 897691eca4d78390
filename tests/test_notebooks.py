"""Execute the notebooks end to end.

Each notebook asserts its own claims in code cells, so a failing claim is a cell error here. The
notebooks run in a temporary directory (the files they write stay out of the repo), with the
Agg matplotlib backend, in a kernel that is this interpreter, and must be committed without
outputs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

# The notebooks run in a kernel of their own, which imports numba itself.
pytestmark = pytest.mark.needs_numba

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_tpc_distortion.ipynb"]


def test_all_notebooks_are_tested():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {index} has outputs; clear them"
            assert cell.execution_count is None, f"{name}: cell {index} has an execution count"


@pytest.fixture(scope="session")
def kernel_path(tmp_path_factory) -> Path:
    """A ``python3`` kernelspec that runs this interpreter, for JUPYTER_PATH.

    Jupyter finds ``python3`` through ipykernel's bundled spec when ipykernel is installed in
    the running environment, but a user-level ``python3`` spec may point at another
    interpreter (without xslide). Writing our own spec first on JUPYTER_PATH removes both
    doubts without ``ipykernel install``.
    """
    pytest.importorskip("ipykernel")
    from ipykernel.kernelspec import write_kernel_spec

    path = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(path / "kernels" / "python3")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch, kernel_path):
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    def prepend(variable: str, value: Path) -> None:
        rest = os.environ.get(variable)
        monkeypatch.setenv(variable, os.pathsep.join([str(value), *([rest] if rest else [])]))

    prepend("JUPYTER_PATH", kernel_path)
    prepend("PYTHONPATH", ROOT)  # the kernel imports this checkout's xslide
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable

    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
