"""Writes the project's URL into every install line that carries it.

The URL is kept in one place, pyproject.toml's `[project.urls] Repository`. This script rewrites the
`ganjax @ git+URL` of README.md's Colab install line and of the first code cell of every
notebooks/*.ipynb to it, so publishing the project elsewhere means editing pyproject.toml and running

    python tools/sync_urls.py            # rewrite the files that differ, list them
    python tools/sync_urls.py --check    # change nothing; exit 1 listing the files that differ

tests/test_notebook.py fails while any of them differs from pyproject.toml.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A PEP 508 direct reference to the repository: `ganjax @ git+URL`, optionally with extras.
INSTALL_URL = re.compile(r"(ganjax(?:\[[^\]]*\])? @ git\+)([^\s\"'`\\]+)")


def repository_url(root: str = REPO) -> str:
    """pyproject.toml's [project.urls] Repository."""
    with open(os.path.join(root, "pyproject.toml"), "rb") as stream:
        urls = tomllib.load(stream)["project"].get("urls", {})
    if "Repository" not in urls:
        raise ValueError(f"{os.path.join(root, 'pyproject.toml')} has no [project.urls] Repository = \"https://...\".")
    return urls["Repository"]


def install_urls(text: str) -> list[str]:
    """The URLs of the `ganjax @ git+URL` install lines in `text`."""
    return [match.group(2) for match in INSTALL_URL.finditer(text)]


def with_url(text: str, url: str, where: str) -> str:
    """`text` with every install line's URL set to `url`.

    Raises:
      ValueError naming `where` if `text` has no install line (nothing to keep in sync).
    """
    if not install_urls(text):
        raise ValueError(f"{where} has no `ganjax @ git+URL` install line; add one (see README.md, 'Notebooks').")
    return INSTALL_URL.sub(lambda match: match.group(1) + url, text)


def first_code_cell(notebook: dict, where: str) -> dict:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError(f"{where} has no code cell; its first code cell must install ganjax.")


def cell_source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def notebook_paths(root: str = REPO) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "notebooks", "*.ipynb")))


def synced_files(root: str = REPO) -> dict[str, str]:
    """{path: its text with the install lines carrying pyproject's URL}, for README.md and every notebook."""
    url = repository_url(root)
    synced = {}
    readme = os.path.join(root, "README.md")
    with open(readme, encoding="utf-8") as stream:
        synced[readme] = with_url(stream.read(), url, readme)
    for path in notebook_paths(root):
        with open(path, encoding="utf-8") as stream:
            notebook = json.load(stream)
        cell = first_code_cell(notebook, path)
        # On disk a cell's source is a list of lines (as nbformat writes it).
        cell["source"] = with_url(cell_source(cell), url, f"{path}'s first code cell").splitlines(keepends=True)
        # nbformat's own layout, so a rewrite changes the URL and nothing else.
        synced[path] = json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    return synced


def out_of_date(root: str = REPO) -> dict[str, str]:
    """{path: synced text} of the files whose install lines differ from pyproject's URL."""
    stale = {}
    for path, text in synced_files(root).items():
        with open(path, encoding="utf-8") as stream:
            if stream.read() != text:
                stale[path] = text
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    try:
        stale = out_of_date()
    except ValueError as error:
        print(f"sync_urls: error: {error}", file=sys.stderr)
        return 2
    url = repository_url()
    for path, text in stale.items():
        if not args.check:
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
        print(f"{'differs' if args.check else 'rewrote'}: {os.path.relpath(path, REPO)}")
    if not stale:
        print(f"every install line carries {url}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
