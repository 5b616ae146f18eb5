"""How benchmarks/report_block.py writes the commands of a study run once per seed into docs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from report_block import per_seed_commands  # noqa: E402


def test_runs_that_differ_only_by_seed_are_written_once() -> None:
    """The seed in --seeds, in the json's name and in a --work folder becomes S: one line, not one per seed."""
    headers = [{"command": f"python bench_real.py --seeds {s} --work /tmp/s24/w_tdef_s{s} --json /tmp/s24/tdef_s{s}.json"} for s in (3, 13)]
    lines = per_seed_commands(headers, [3, 13], "selection_table.py").splitlines()
    assert lines == [
        "python bench_real.py --seeds S --work /tmp/s24/w_tdef_sS --json /tmp/s24/tdef_sS.json",
        "# for S in 3 13; rendered by: selection_table.py",
    ]


def test_other_numbers_and_multi_seed_commands_are_kept_as_they_ran() -> None:
    """Only the run's own seed is substituted (s24 and _s30 stay); a command over several seeds is verbatim."""
    one = "python bench_real.py --seeds 3 --work /tmp/s24/w_s30 --json /tmp/s24/or_s3.json"
    several = "python bench_real.py --seeds 0 1 --json /tmp/x_s1.json"
    lines = per_seed_commands([{"command": one}, {"command": several}], [0, 1, 3], "r").splitlines()
    assert "python bench_real.py --seeds S --work /tmp/s24/w_s30 --json /tmp/s24/or_sS.json" in lines
    assert several in lines
