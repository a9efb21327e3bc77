"""Every notebook in notebooks/ runs top to bottom on tiny settings, as CI runs it (nbclient, fast tier), and
shows its pictures and tables; every one is saved without outputs and installs ganjax from pyproject.toml's
URL; together they cover every study.

A notebook NAME.ipynb runs tiny with GANJAX_NAME_TINY=1 and writes into GANJAX_NAME_WORKDIR. Its cells tagged
"figures" must show a PNG and those tagged "table" text (markdown, HTML or printed).
"""

import glob
import importlib.util
import json
import os
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO
from ganjax import checkpoint, names
from ganjax.cli import CACHE_ENV, CACHE_OFF
from ganjax.config import load_config

NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
TINY_STEPS = 20  # every notebook's GAN trains this many steps on tiny settings
TEXT_TYPES = ("text/markdown", "text/html", "text/plain")


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(os.path.join(NOTEBOOK_DIR, f"{name}.ipynb"), as_version=4)


def _code(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _tagged(notebook, tag: str) -> list:
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


def _output_text(cell) -> str:
    """Everything a cell showed as text: printed output and displayed markdown, HTML or plain text."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream" and output.name == "stdout":
            texts.append(output.text)
        for mime in TEXT_TYPES:
            texts.append(output.get("data", {}).get(mime, ""))
    return "".join(texts)


def _sync_urls():
    spec = importlib.util.spec_from_file_location("sync_urls", os.path.join(REPO, "tools", "sync_urls.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(workdir: str) -> dict:
    with open(os.path.join(workdir, "report.json")) as stream:
        return json.load(stream)


def _check_gan(workdir: str) -> None:
    assert checkpoint.latest_step(workdir) == TINY_STEPS
    assert glob.glob(os.path.join(workdir, "samples", "step_*.png"))


def _check_quickstart(workdir: str) -> None:
    _check_gan(workdir)


def _check_long_tail(workdir: str) -> None:
    report = _report(workdir)
    assert report["meta"]["study"] == "long_tail" and set(report) == {"meta", "plain", "oversample", "gan"}
    assert report["meta"]["best_on_validation"] in report
    _check_gan(os.path.join(workdir, "gan"))


def _check_few_labels(workdir: str) -> None:
    report = _report(workdir)
    assert report["meta"]["study"] == "few_label" and set(report) == {"meta", *names.FEW_LABEL_STRATEGIES}
    for strategy in ("semi_gan", "acgan"):
        assert os.path.isfile(os.path.join(workdir, f"samples_{strategy}.png"))


def _check_generative_metrics(workdir: str) -> None:
    _check_gan(workdir)
    with open(os.path.join(workdir, "eval.json")) as stream:
        evaluation = json.load(stream)
    assert {"fid_domain", "kid_domain_mean", "precision_domain", "recall_domain", "density_domain", "coverage_domain",
            "intra_class_fid_domain", "class_coverage", "inception_score_domain_mean", "cas"} <= set(evaluation["scores"])
    provenance = evaluation["provenance"]
    assert provenance["checkpoint_step"] == TINY_STEPS and provenance["num_generated"] == 200
    # The tiny domain classifier stays in the workdir, out of the cache that later evaluations reuse.
    assert provenance["feature_extractor"]["path"] == os.path.join(workdir, "domain_classifier")


def _check_repair(workdir: str) -> None:
    report = _report(workdir)
    assert report["meta"]["study"] == "repair" and list(report["meta"]["repair_table"]) == ["pixels:0.5"]
    for name in report["meta"]["grid_files"].values():
        assert os.path.isfile(os.path.join(workdir, name))
    _check_gan(os.path.join(workdir, "gan"))


def _check_robustness(workdir: str) -> None:
    report = _report(workdir)
    assert report["meta"]["study"] == "robust"
    assert list(report["meta"]["robust_table"]) == ["standard", "pgd_at_generated"]
    _check_gan(os.path.join(workdir, "gan"))


# What each notebook leaves in its workdir on tiny settings.
CHECKS = {
    "quickstart": _check_quickstart,
    "long_tail": _check_long_tail,
    "few_labels": _check_few_labels,
    "generative_metrics": _check_generative_metrics,
    "repair": _check_repair,
    "robustness": _check_robustness,
}


def test_every_notebook_has_a_tiny_run_here():
    assert {_stem(path) for path in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_is_saved_without_outputs(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert _tagged(notebook, "figures") and _tagged(notebook, "table")
    assert f'os.environ.get("GANJAX_{name.upper()}_TINY")' in _code(notebook)


def test_the_notebooks_cover_every_study_the_metrics_and_the_quickstart():
    studies = {}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = _code(notebook)
        if "ganjax.run_study(" in code:
            (config_name,) = set(re.findall(r'ganjax\.load_config\("(\w+)"\)', code))
            config = load_config(config_name)
            studies[names.study_of(config.data.subset, config.experiment.study)] = _stem(path)
    assert set(studies) == set(names.STUDIES), studies
    assert any("ganjax.evaluate_generator(" in _code(nbformat.read(path, as_version=4)) for path in NOTEBOOKS)
    assert "quickstart" in {_stem(path) for path in NOTEBOOKS}


def test_every_install_line_carries_pyprojects_url():
    sync_urls = _sync_urls()
    url = sync_urls.repository_url()
    assert url.startswith("https://")
    with open(os.path.join(REPO, "README.md")) as stream:
        readme_urls = sync_urls.install_urls(stream.read())
    assert readme_urls and set(readme_urls) == {url}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        install = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert "import ganjax" in install.source and "%pip install" in install.source, path
        assert sync_urls.install_urls(install.source) == [url], path
        # No other cell carries a URL of its own.
        assert set(sync_urls.install_urls(_code(notebook))) == {url}, path
    assert sync_urls.out_of_date() == {}


def test_sync_urls_moves_every_install_line_to_pyprojects_new_url(tmp_path):
    sync_urls = _sync_urls()
    old, new = sync_urls.repository_url(), "https://example.org/elsewhere/ganjax.git"
    with open(os.path.join(REPO, "pyproject.toml")) as stream:
        pyproject = stream.read()
    assert pyproject.count(f'Repository = "{old}"') == 1
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(f'Repository = "{old}"', f'Repository = "{new}"'))
    shutil.copy(os.path.join(REPO, "README.md"), tmp_path / "README.md")
    shutil.copytree(NOTEBOOK_DIR, tmp_path / "notebooks", ignore=shutil.ignore_patterns("workdirs", ".*"))
    synced = sync_urls.synced_files(str(tmp_path))
    assert len(synced) == 1 + len(NOTEBOOKS)
    for path, text in synced.items():
        assert new in sync_urls.install_urls(text) and old not in text, path
        with open(path) as stream:
            original = stream.read()
        # Only the URL changes: a notebook's JSON is written back in nbformat's own layout.
        assert text.replace(new, old) == original, path


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_tiny_and_shows_its_pictures_and_tables(name, tmp_path, monkeypatch):
    workdir = str(tmp_path / name)
    # The kernel is a subprocess and inherits these.
    monkeypatch.setenv(f"GANJAX_{name.upper()}_TINY", "1")
    monkeypatch.setenv(f"GANJAX_{name.upper()}_WORKDIR", workdir)
    monkeypatch.setenv("GANJAX_CACHE", str(tmp_path / "cache"))  # domain classifiers, reference features
    # This checkout's ganjax, whatever a `pip install -e` points at: the install cell then does nothing.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    # The kernel shares the session's compilation cache (conftest.py), as in-process tests do: the study
    # notebooks train the same tiny GAN and classifiers, and a cache hit halves a notebook's time.
    cache = os.environ.get(CACHE_ENV, "off")
    if cache.strip().lower() not in CACHE_OFF:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    notebook = _read(name)

    # Runs in notebooks/, as a user would; raises CellExecutionError if any cell fails.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOK_DIR}}).execute()

    CHECKS[name](workdir)
    for cell in _tagged(notebook, "figures"):
        assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source[:80]
    tables = [_output_text(cell) for cell in _tagged(notebook, "table")]
    assert all(text.strip() for text in tables), tables
    if os.path.isfile(os.path.join(workdir, "report.json")):
        strategies = set(_report(workdir)) - {"meta"}
        assert all(f"| {strategy} |" in "".join(tables) for strategy in strategies), tables
