"""Build ganjax's API reference (HTML) from its docstrings with pdoc, and check the docstrings.

    pip install -e '.[test]'                  # pdoc is in the test extra
    python tools/build_docs.py                # writes docs/api/ (git-ignored); open docs/api/index.html
    python tools/build_docs.py --out DIR      # elsewhere; --check builds in memory and writes nothing

The build fails (exit status 1, every problem listed) when a module of ganjax fails to import, when pdoc
warns (an unresolvable name, an unreadable docstring, ...), or when a docstring names a ganjax object in
backticks (`ganjax.data.from_arrays`, `python -m ganjax.train`) that does not exist. tests/test_api_docs.py
runs the same build.

Two things differ from a plain `pdoc ganjax`, neither touching ganjax itself: `ganjax.__all__` lists the
lazily imported API (`train_gan`, ...) and no submodules, so pdoc would see neither; the build resolves the
lazy names on the package object while it renders and walks every submodule itself (a package page lists
its submodules whatever its `__all__`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import importlib
import os
import pkgutil
import re
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "ganjax"
DEFAULT_OUT = REPO / "docs" / "api"
DOCFORMAT = "google"  # docstrings use Google-style Args:/Raises:/Returns: sections
# A backtick span (Markdown code, may wrap a line); dotted names of the package are looked for inside.
CODE_SPAN = re.compile(r"`([^`]+)`")
# {name: module}: recursive type aliases of other libraries that ganjax's annotations reach (see pdoc_workarounds).
FOREIGN_ALIASES = {"ArrayTree": "chex"}


@dataclasses.dataclass
class Problems:
    """What makes a build fail, each a readable line (or block, for tracebacks)."""

    import_errors: list[str] = dataclasses.field(default_factory=list)
    pdoc_warnings: list[str] = dataclasses.field(default_factory=list)
    broken_references: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"import error: {error}" for error in self.import_errors]
                + [f"pdoc warning: {warning}" for warning in self.pdoc_warnings]
                + [f"broken reference: {reference}" for reference in self.broken_references])

    def __bool__(self) -> bool:
        return bool(self.import_errors or self.pdoc_warnings or self.broken_references)


def module_names(package_name: str, problems: Problems) -> list[str]:
    """Every module of the package (`__main__` modules left out, as pdoc does), each imported; a module that
    fails to import is recorded in `problems` and left out."""
    package = importlib.import_module(package_name)

    def walk_error(name: str) -> None:
        problems.import_errors.append(f"{name}\n{traceback.format_exc()}")

    walked = pkgutil.walk_packages(package.__path__, f"{package_name}.", onerror=walk_error)
    names = [package_name] + [info.name for info in walked if info.name.rpartition(".")[2] != "__main__"]
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (any import failure is a build failure, reported with its traceback)
            walk_error(name)
        else:
            imported.append(name)
    return imported


@contextlib.contextmanager
def lazy_names_resolved(package_name: str) -> Iterator[None]:
    """Puts the objects of the package's lazily imported `__all__` names (resolved by its module
    `__getattr__`) into its namespace while pdoc reads it, and takes them out again."""
    package = importlib.import_module(package_name)
    added = {name: getattr(package, name) for name in getattr(package, "__all__", ()) if name not in vars(package)}
    vars(package).update(added)
    try:
        yield
    finally:
        for name in added:
            vars(package).pop(name, None)


@contextlib.contextmanager
def pdoc_workarounds(names: list[str]) -> Iterator[None]:
    """Works around two limits of pdoc's type evaluation while it renders (ganjax is left as it was):

    - a NamedTuple's generated `__new__` (its documented constructor) belongs to no module, so pdoc evaluates
      its string annotations (`from __future__ import annotations`) in an empty namespace and warns
      (mitmproxy/pdoc#765): it is given its class's module for the build;
    - a recursive type alias of another library names itself in forward references that only that library's
      namespace resolves (chex's `ArrayTree`, inside optax's `OptState`, in Flax's TrainState): the names of
      FOREIGN_ALIASES are added to the namespace pdoc evaluates annotations in. Any other unresolvable
      annotation still warns.
    """
    import pdoc.doc
    import pdoc.doc_types

    new_functions = []
    for name in names:
        for cls in vars(sys.modules[name]).values():
            new = getattr(cls, "__new__", None)
            if (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")
                    and cls.__module__ == name and getattr(new, "__module__", name) not in sys.modules):
                new_functions.append((new, new.__module__))
                new.__module__ = name
    # pdoc.doc imported it by name, pdoc.doc_types.resolve_annotations calls its own; an AttributeError here
    # means pdoc changed: revisit this workaround.
    evaluate = pdoc.doc_types.safe_eval_type
    assert pdoc.doc.safe_eval_type is evaluate

    aliases = {name: getattr(importlib.import_module(module_name), name)
               for name, module_name in FOREIGN_ALIASES.items()}

    def safe_eval_type(annotation, globalns, localns, module, fullname):
        return evaluate(annotation, globalns, {**aliases, **(localns or {})}, module, fullname)

    pdoc.doc.safe_eval_type = pdoc.doc_types.safe_eval_type = safe_eval_type
    try:
        yield
    finally:
        pdoc.doc.safe_eval_type = pdoc.doc_types.safe_eval_type = evaluate
        for new, module_name in new_functions:
            new.__module__ = module_name


def render(names: list[str], out: Path | None, problems: Problems) -> dict[str, str]:
    """{module name: HTML} of every module in `names`, also written to `out` (with index.html and search.js)
    unless it is None; every warning pdoc emits is recorded in `problems`."""
    import pdoc.doc
    import pdoc.render

    class Module(pdoc.doc.Module):
        @functools.cached_property
        def submodules(self) -> list[pdoc.doc.Module]:
            """The direct submodules among those documented, whatever the package's `__all__` lists."""
            prefix = f"{self.modulename}."
            return [modules[name] for name in names if name.startswith(prefix) and "." not in name[len(prefix):]]

    pdoc.render.configure(docformat=DOCFORMAT, show_source=True, search=True,
                          footer_text=f"{names[0]} API reference (tools/build_docs.py)")
    pages = {}
    with lazy_names_resolved(names[0]), pdoc_workarounds(names), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = {name: Module.from_name(name) for name in names}
        for name, module in modules.items():
            pages[name] = pdoc.render.html_module(module, modules)
        index = pdoc.render.html_index(modules)
        search = pdoc.render.search_index(modules)
    for warning in caught:
        problems.pdoc_warnings.append(f"{warning.filename}:{warning.lineno}: {warning.category.__name__}: "
                                      f"{warning.message}")
    if out is not None:
        for name, html in pages.items():
            path = out / f"{name.replace('.', '/')}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(html, encoding="utf-8")
        if index:
            (out / "index.html").write_text(index, encoding="utf-8")
        if search:
            (out / "search.js").write_text(search, encoding="utf-8")
    return pages


def docstrings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every docstring in a Python file: of the module, classes and functions (private ones
    too), and the string under an assignment (an attribute docstring, as pdoc reads them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for index, statement in enumerate(body):
            is_string = (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                         and isinstance(statement.value.value, str))
            if not is_string:
                continue
            first = index == 0 and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            after_assignment = index > 0 and isinstance(body[index - 1], (ast.Assign, ast.AnnAssign))
            if first or after_assignment:
                yield statement.lineno, statement.value.value


def referenced_names(text: str, package_name: str = PACKAGE) -> Iterator[str]:
    """The package's dotted names inside backtick spans of `text`: `ganjax.api.train_gan`,
    `ganjax.repair.inpaint(generator, ...)` -> ganjax.repair.inpaint, `python -m ganjax.train` -> ganjax.train."""
    dotted_name = re.compile(rf"(?<![\w.]){re.escape(package_name)}(?:\.[A-Za-z_]\w*)+")
    for span in CODE_SPAN.finditer(text):
        yield from dotted_name.findall(span.group(1))


def resolves(name: str) -> bool:
    """Whether a dotted name is a real object: the longest importable module prefix, then attributes (a
    dataclass or Flax module field declared by annotation only counts as an attribute)."""
    parts = name.split(".")
    for length in range(len(parts), 0, -1):
        module_name = ".".join(parts[:length])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not f"{module_name}.".startswith(f"{error.name}."):
                raise  # the module exists but one of its own imports is missing
            continue
        break
    else:
        return False
    for attribute in parts[length:]:
        if hasattr(obj, attribute):
            obj = getattr(obj, attribute)
            continue
        annotations = {}
        for klass in getattr(obj, "__mro__", ()):
            annotations.update(vars(klass).get("__annotations__", {}))
        return attribute in annotations and attribute == parts[-1]
    return True


def broken_references(package_name: str = PACKAGE) -> list[str]:
    """"path:line: `name`" of every backticked dotted name of the package, in any docstring of its source
    files, that does not resolve."""
    root = Path(importlib.import_module(package_name).__file__).parent
    broken = []
    for path in sorted(root.rglob("*.py")):
        for line, text in docstrings(path):
            for name in dict.fromkeys(referenced_names(text, package_name)):
                if not resolves(name):
                    broken.append(f"{os.path.relpath(path)}:{line}: `{name}`")
    return broken


def build(out: Path | None = DEFAULT_OUT, package_name: str = PACKAGE) -> tuple[dict[str, str], Problems]:
    """Builds the reference of a package ({module name: HTML}; written to `out` unless None) and returns it
    with the problems found; the build is good when the problems are empty."""
    problems = Problems()
    names = module_names(package_name, problems)
    pages = render(names, out, problems)
    problems.broken_references.extend(broken_references(package_name))
    return pages, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: docs/api)")
    parser.add_argument("--check", action="store_true", help="build in memory and check; write nothing")
    args = parser.parse_args(argv)
    pages, problems = build(None if args.check else args.out)
    for line in problems.lines():
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems.lines())} problem(s); the reference is not good", file=sys.stderr)
        return 1
    where = "checked in memory" if args.check else f"written to {args.out}/index.html"
    print(f"{len(pages)} modules documented, {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
