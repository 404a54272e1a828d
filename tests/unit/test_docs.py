"""The project's documents stand alone: every file they point a reader to is in the repository.

A reader who follows a link or a path in the README, the protocol page or the docs must
find the file. A document that cites one kept outside the repository, or a module since
moved, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "schema/README.md", *sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("docs/*.md"))]
#: Top-level folders of the repository: a backticked path starting with one of them names a file of ours.
OUR_FOLDERS = ("kafka_ws_trio/", "schema/", "scripts/", "tests/", "docs/", "examples/", "bench/", "sdk/")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")


def _referenced_paths(document: str) -> set[str]:
    text = (REPO / document).read_text()
    base = (REPO / document).parent
    found = {
        (base / target).resolve().relative_to(REPO).as_posix() for target in LINK.findall(text) if "://" not in target
    }
    for token in CODE.findall(text):
        path = token.rstrip(".,;:")
        if path in OUR_FOLDERS:
            continue  # a top-level folder by name (the architecture plans some that come later)
        if path.startswith(OUR_FOLDERS) and not any(c in path for c in "*{}<>$"):
            found.add(path.split(":", 1)[0].rstrip("/"))
        elif re.fullmatch(r"[\w.-]+\.md", path):
            found.add(path)  # a bare document name: ours, next to the README or at the top
    return found


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_file_a_document_points_to_exists(document: str) -> None:
    missing = sorted(
        path
        for path in _referenced_paths(document)
        if not (REPO / path).exists() and not (REPO / document).parent.joinpath(path).exists()
    )
    assert not missing, f"{document} points to files that are not in the repository: {missing}"
