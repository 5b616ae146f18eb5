"""A run whose Fisher scores lack the blocks below fisher-cost's cost cut (what runs record since
fisher-cost scores only the modules it may pick): run.json, `inspect` and the HTML report show
those modules as not scored, never as 0, and runs that scored every module read as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.reporting.report import run_report
from cegate_cli.run import read_manifest

RECORDS = Path(__file__).resolve().parent / "run_records"
LEGEND = "– = not scored: blocks 0-1 lie below fisher-cost's cost cut"
UNSCORED_CELL = "<td class='unscored' title='not scored'>–</td>"


def _galileo() -> dict[str, Any]:
    """A fisher-cost run on galileo-nano (4 blocks, 3 kinds, --select 2) that scored all 12 modules."""
    return json.loads((RECORDS / "galileo.json").read_text())


def _folder(tmp_path: Path, data: dict[str, Any], name: str) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps(data))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """The recorded run as it is (every module scored) and as today's fisher-cost writes it:
    blocks 0-1 unscored, the cut at block 2 (4 blocks, budget half)."""
    old = _galileo()
    new = _galileo()
    (event,) = new["selection"]["history"]
    event["unscored"] = [{"kind": s["kind"], "layer": s["layer"]} for s in event["scores"] if s["layer"] < 2]
    event["scores"] = [s for s in event["scores"] if s["layer"] >= 2]
    return _folder(tmp_path, old, "old"), _folder(tmp_path, new, "new")


def test_run_json_keeps_the_unscored_modules_and_the_report_data_marks_them(runs: tuple[Path, Path]) -> None:
    old, new = runs
    data = json.loads((new / "run.json").read_text())
    assert read_manifest(new).to_dict() == data  # "unscored" reads back and writes out unchanged
    report = run_report(new)
    assert len(report["scores"]) == 12 and report["compute"]["candidates"] == 12
    below = [s for s in report["scores"] if s["layer"] < 2]
    assert len(below) == 6 and all(s["score"] is None and s["raw"] is None and not s["selected"] and not s["chosen"] for s in below)
    assert all(s["score"] is not None for s in report["scores"] if s["layer"] >= 2)
    earlier = run_report(old)  # every module scored: no None anywhere
    assert len(earlier["scores"]) == 12 and all(s["score"] is not None for s in earlier["scores"])
    assert earlier["compute"] == report["compute"]


def test_inspect_shows_unscored_modules_as_not_scored_with_a_legend(runs: tuple[Path, Path]) -> None:
    old, new = runs
    runner = CliRunner()
    shown = runner.invoke(app, ["inspect", str(new)])
    assert shown.exit_code == 0, shown.output
    assert LEGEND in shown.output
    rows = {line.split()[0]: line.split()[1:] for line in shown.output.splitlines() if line.strip()[:1] in "0123" and len(line.split()) >= 4}
    assert rows["0"] == ["–", "–", "–"] and rows["1"] == ["–", "–", "–"]
    assert "0.00" not in " ".join(rows["0"] + rows["1"])
    as_json = json.loads(runner.invoke(app, ["inspect", str(new), "--json"]).stdout)
    assert [s["score"] for s in as_json["scores"] if s["layer"] < 2] == [None] * 6
    before = runner.invoke(app, ["inspect", str(old)])
    assert before.exit_code == 0, before.output
    assert "not scored" not in before.output and "–" not in before.output


def test_report_shows_unscored_modules_as_not_scored_with_a_legend(runs: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = runs
    runner = CliRunner()
    for run in (old, new):
        result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / f"{run.name}.html")])
        assert result.exit_code == 0, result.output
    page = (tmp_path / "new.html").read_text(encoding="utf-8")
    assert page.count(UNSCORED_CELL) == 6
    assert LEGEND.replace("'", "&#x27;") in page and "an average scored block" in page
    assert page.count(" ●</td>") == 2  # the two selected modules, both scored
    before = (tmp_path / "old.html").read_text(encoding="utf-8")
    assert "class='unscored'" not in before and "not scored" not in before and "an average block" in before
