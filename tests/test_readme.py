"""The README is what a newcomer reads in two minutes: under 120 lines, the set-up and test
commands first (.ci/run runs exactly those), and every relative link in it and in docs/ leads
to a file that exists, and an anchor to a heading of that file, so the pages the README sends
people to are there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to -."""
    heads = [line.lstrip("#").strip().lower() for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", head).replace(" ", "-") for head in heads}


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every markdown link that is not a URL (`#anchor` alone: this page)."""
    found = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for target in LINK.findall(line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                found.append((number, target))
    return found


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 120, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_starts_with_the_commands_ci_runs():
    head = README.read_text(encoding="utf-8").splitlines()[:6]
    assert "    python3 -m pip install -e '.[test]'" in head
    assert "    cegate demo" in head
    assert "Tests: `python3 -m pytest -q`" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m pip install -e '.[test]'" in ci and "python3 -m pytest -q" in ci


def broken(page: Path, target: str) -> bool:
    path, _, anchor = target.partition("#")
    dest = page.parent / path if path else page
    if not dest.exists():
        return True
    return bool(anchor) and dest.suffix == ".md" and anchor not in anchors(dest)


def test_relative_links_resolve():
    found = [f"{page.relative_to(ROOT)}:{line}: {target}" for page in PAGES for line, target in relative_links(page) if broken(page, target)]
    assert not found, "links to missing files or headings:\n" + "\n".join(found)


def test_the_readme_links_to_the_docs():
    targets = {target.split("#", 1)[0] for _, target in relative_links(README)}
    assert {"docs/usage.md", "docs/backbones.md", "docs/results.md", "docs/README.md"} <= targets
