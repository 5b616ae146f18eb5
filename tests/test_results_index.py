"""benchmarks/results/README.md indexes every result file: each file there is named in the first
column of one of its tables, exactly or by a glob, so a reader learns what made it and which
table reads it. A name or glob that matches no file, and a link that leads nowhere, are stale."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
INDEX = RESULTS / "README.md"


def indexed_names() -> list[str]:
    """The backticked names and globs in the first column of the index's table rows."""
    names = []
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and not set(cells[1].strip()) <= set("-"):
            names += re.findall(r"`([^`]+)`", cells[1])
    return names


def result_files() -> list[str]:
    return sorted(p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*") if p.is_file() and p != INDEX)


def test_every_result_file_is_indexed():
    names = indexed_names()
    missing = [f for f in result_files() if not any(fnmatch.fnmatchcase(f, n) for n in names)]
    assert not missing, f"add these to {INDEX.relative_to(RESULTS.parents[1])}: {missing}"


def test_every_index_entry_names_a_file():
    files = result_files()
    stale = [n for n in indexed_names() if not fnmatch.filter(files, n)]
    assert not stale, f"entries of the index that match no file: {stale}"


def test_the_index_links_resolve():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", INDEX.read_text(encoding="utf-8"))
    assert links
    broken = [link for link in links if not (INDEX.parent / link).exists()]
    assert not broken, broken
