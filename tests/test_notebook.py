"""notebooks/quickstart.ipynb runs top to bottom on a tiny config, as the tests in CI run it."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO
from ganjax import checkpoint

NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")
STEPS = 20


def _cell_tagged(notebook, tag):
    tagged = [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged {tag!r}, found {len(tagged)}"
    return tagged[0]


def test_quickstart_is_saved_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.slow
def test_quickstart_runs_and_shows_samples(tmp_path, monkeypatch):
    workdir = str(tmp_path / "quickstart")
    # The kernel is a subprocess and inherits these.
    monkeypatch.setenv("GANJAX_QUICKSTART_WORKDIR", workdir)
    monkeypatch.setenv("GANJAX_QUICKSTART_STEPS", str(STEPS))
    monkeypatch.setenv("GANJAX_QUICKSTART_WIDTH", "8")
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    # Runs in notebooks/, as a user would; raises CellExecutionError if any cell fails.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": os.path.join(REPO, "notebooks")}},
    ).execute()

    assert checkpoint.latest_step(workdir) == STEPS
    assert glob.glob(os.path.join(workdir, "samples", "*.png"))
    grid_outputs = _cell_tagged(notebook, "sample-grid").outputs
    assert any("image/png" in output.get("data", {}) for output in grid_outputs), grid_outputs
