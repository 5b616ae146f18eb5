"""Docstrings and comments in cegate_cli say what the code does and why, not what it once did or
what a benchmark measured: history belongs in CHANGELOG.md, figures in docs/. This test reads
every docstring (every bare string statement, attribute docstrings included) and every comment
of the package and names the file and line of each phrase that reads as history or as a
measured figure. Strings the program prints (messages, help) are not read here.

The patterns are narrow on purpose: "no longer" and "used to" are flagged in any sense, so a
docstring says "whose process is gone" or "the patch that measures" instead; a bare number
(a threshold, a default, an example shape) is not a figure."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cegate_cli"

HISTORY = {
    "used to (then)": re.compile(r"(?<!\bis )(?<!\bare )(?<!\bbe )(?<!\bbeing )\bused to\b", re.I),
    "issue number": re.compile(r"\b(issue|pr|pull request)s?\s*#?\d+", re.I),
    "#NN reference": re.compile(r"(?<![\w&])#\d{2,}\b"),
    "previously": re.compile(r"\bpreviously\b", re.I),
    "formerly": re.compile(r"\bformer(ly)?\b", re.I),
    "no longer": re.compile(r"\bno longer\b", re.I),
    "was changed": re.compile(r"\b(was|were|has been|have been) changed\b", re.I),
    "earlier versions": re.compile(r"\b(in|of|than) (the )?(earlier|older|previous|prior) (versions?|releases?)\b", re.I),
    "Now, after a past": re.compile(r"(?:^|[.!?;:]\s+)Now\b(?! that\b)"),
    "before this change": re.compile(r"\bbefore this( change| fix| release| version)?\b", re.I),
}

FIGURES = {
    "mIoU figure": re.compile(r"\d?\.\d{2,}\s*(?:\w+\s)?mIoU\b|\bmIoU\s*(?:of |from |at |was |is )?[-+]?\d?\.\d", re.I),
    "speed or size ratio": re.compile(r"\b\d+(\.\d+)?\s*(x|times) (faster|slower|of)\b|\b\d\.\d{2,}x\b", re.I),
    "seed count": re.compile(r"\b\d+ (paired )?seeds\b|\bahead on \d+ of \d+\b", re.I),
    "measured value": re.compile(r"\bmeasured\b[^.;]{0,80}?\d+(\.\d+)?\s?(ms|s|seconds|min|minutes|MB|GB|MiB|GiB|%)(?!\w)", re.I),
}


def docstrings(tree: ast.AST) -> list[tuple[int, str]]:
    """(first line, text) of every bare string statement: module, class and function docstrings
    and the attribute docstrings written under constants and fields."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.append((node.lineno, node.value.value))
    return found


def comments(source: str) -> list[tuple[int, str]]:
    """(line, text after the #) of every comment."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(tok.start[0], tok.string[1:]) for tok in tokens if tok.type == tokenize.COMMENT]


def hits(text: str, first_line: int) -> list[tuple[int, str, str]]:
    """(line, kind, matched text) for every history phrase or figure in `text`."""
    found = []
    for kind, pattern in {**HISTORY, **FIGURES}.items():
        for match in pattern.finditer(text):
            line = first_line + text.count("\n", 0, match.start())
            found.append((line, kind, match.group(0)))
    return found


def evidence_in(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    texts = docstrings(ast.parse(source)) + comments(source)
    name = path.relative_to(PACKAGE.parent)
    return [f"{name}:{line}: {kind}: {text!r}" for first, body in texts for line, kind, text in hits(body, first)]


def test_no_history_or_figures_in_docstrings_and_comments():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in evidence_in(path)]
    assert not found, "docstrings and comments say what and why; history goes to CHANGELOG.md, figures to docs/:\n" + "\n".join(found)


def test_the_patterns_flag_history_and_figures():
    flagged = [
        "Two processes used to both succeed.",
        "The state was a pickle before (issue 14).",
        "see #31",
        "In earlier versions cegate trained every module.",
        "It previously spun.",
        "A sparse file started a long job without a word. Now predict opens every header first.",
        "pickles are no longer read",
        "it raised mIoU from 0.676 to 0.691",
        "a --from run lost 0.18 target mIoU",
        "0.50x the step time",
        "2.5 times faster",
        "10 of 10 paired seeds",
        "(measured: 47 s instead of 34 s)",
        "measured on a wide scene: 224 MB of cells",
    ]
    for text in flagged:
        assert hits(text, 1), text


def test_the_patterns_leave_what_and_why_alone():
    plain = [
        "The patch that measures local pixel size; a class is used to weigh the loss.",
        "Validation mIoU a move must add to be kept, at least (see `required_gain`).",
        "mIoU averages the IoU of the classes that occur in the labels or in the prediction.",
        "The rate measured on the first batch, before the tiles left are timed.",
        "20000 x 20000 x 4 bands at 16 bits: 3.2 GB inflated from 3 MB on disk.",
        "MAX_GAIN = 0.002  # one pixel in 500",
        "A run made before that kind existed reads back as it was written.",
        "Class shares (None for runs from older versions); legends of masks made by an older cegate.",
        "at most 4x the budget is read; a run within 1.5x the time of source only",
        "colour '#1f77b4' and step 100",
        'the cores free now instead. "Now" is a short sample; from now on only modules train.',
    ]
    for text in plain:
        assert not hits(text, 1), (text, hits(text, 1))


def test_hits_name_the_line():
    assert hits("what\nwhy\nit used to spin", 10) == [(12, "used to (then)", "used to")]
