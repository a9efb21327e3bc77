"""The API reference builds from the docstrings with pdoc (tools/build_docs.py): every module imports, pdoc
warns about nothing, and every backticked ganjax name in a docstring is a real object."""

import os
import sys
import textwrap

from conftest import REPO

import ganjax

sys.path.insert(0, os.path.join(REPO, "tools"))
import build_docs


def test_the_reference_of_ganjax_builds_without_a_problem(tmp_path, capsys):
    pages, problems = build_docs.build(tmp_path)
    assert not problems, "\n".join(problems.lines())
    for module in ("ganjax", "ganjax.api", "ganjax.data", "ganjax.data.arrays", "ganjax.tensorboard",
                   "ganjax.studies.strategies.semi_gan"):
        assert module in pages and (tmp_path / f"{module.replace('.', '/')}.html").is_file(), module
    assert (tmp_path / "index.html").is_file() and (tmp_path / "search.js").is_file()
    # The lazily imported API is documented on the package page, and the submodules are listed there.
    assert 'id="train_gan"' in pages["ganjax"] and 'href="ganjax/data.html"' in pages["ganjax"]
    assert 'href="ganjax/data.html#from_arrays"' in pages["ganjax"]  # a docstring's `ganjax.data.from_arrays`
    # The build leaves ganjax as it found it.
    assert "train_gan" not in vars(ganjax)
    from ganjax.repair.inversion import InpaintResult
    assert InpaintResult.__new__.__module__ != InpaintResult.__module__


def test_import_errors_pdoc_warnings_and_broken_references_fail_the_build(tmp_path, monkeypatch, capsys):
    package = tmp_path / "docs_fixture_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""See `docs_fixture_pkg.good.thing` and `docs_fixture_pkg.good.missing`."""\n')
    (package / "good.py").write_text(textwrap.dedent('''\
        """Fine."""

        thing = 1
        """An attribute docstring naming `docs_fixture_pkg.nowhere.f()`."""


        def takes(value: "Nowhere") -> None:
            """An annotation pdoc cannot resolve; `docs_fixture_pkg.good.thing` is fine."""
        '''))
    (package / "broken.py").write_text('raise ImportError("a missing dependency")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pages, problems = build_docs.build(None, "docs_fixture_pkg")
    finally:
        for name in [name for name in sys.modules if name.startswith("docs_fixture_pkg")]:
            del sys.modules[name]
    assert set(pages) == {"docs_fixture_pkg", "docs_fixture_pkg.good"}
    assert len(problems.import_errors) == 1 and problems.import_errors[0].startswith("docs_fixture_pkg.broken")
    assert "a missing dependency" in problems.import_errors[0]
    assert len(problems.pdoc_warnings) == 1 and "Nowhere" in problems.pdoc_warnings[0]
    assert [reference.rsplit(": ", 1)[1] for reference in problems.broken_references] == [
        "`docs_fixture_pkg.good.missing`", "`docs_fixture_pkg.nowhere.f`"]

    monkeypatch.setattr(build_docs, "build", lambda out: (pages, problems))
    assert build_docs.main(["--check"]) == 1
    assert "broken reference: " in capsys.readouterr().err
