"""Sphinx configuration: the Markdown pages under docs/ are the source (MyST).

Build with warnings as errors, offline (no intersphinx, nothing fetched):

    .venv/bin/python -m sphinx -W --keep-going -b html docs build/docs
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib

DOCS = Path(__file__).resolve().parent
_project = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]

project = "django-connguard"
author = "the django-connguard authors"
copyright = "the django-connguard authors"
release = _project["version"]
version = release

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]
html_theme = "furo"
html_title = f"django-connguard {release}"
html_static_path: list[str] = []
# Every warning is an error (sphinx-build -W); nothing may need the network.
nitpicky = False
intersphinx_mapping: dict[str, Any] = {}

# ##### Pages written later #####
# index.md lists every page, some of which other work is still writing. A
# toctree entry for a page that does not exist yet is dropped here, with a note
# on the console, so that the build stays warning-free until it lands; a page
# that exists but is listed nowhere is still an error ("not in any toctree").

_TOCTREE = re.compile(r"(```\{toctree\}\n)(.*?)(```)", re.DOTALL)


def _existing_entries(block: str) -> tuple[str, list[str]]:
    kept, dropped = [], []
    for line in block.splitlines(keepends=True):
        entry = line.strip()
        if entry and not entry.startswith(":") and not (DOCS / f"{entry}.md").exists():
            dropped.append(entry)
            continue
        kept.append(line)
    return "".join(kept), dropped


def _drop_missing_pages(app: Any, docname: str, source: list[str]) -> None:
    if docname != root_doc:
        return
    dropped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        body, missing = _existing_entries(match.group(2))
        dropped.extend(missing)
        return match.group(1) + body + match.group(3)

    source[0] = _TOCTREE.sub(replace, source[0])
    if dropped:
        print(f"docs: not written yet, left out of the contents: {', '.join(dropped)}")


def setup(app: Any) -> None:
    app.connect("source-read", _drop_missing_pages)
