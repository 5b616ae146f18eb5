"""Every command's --help, as a user reads it: on/off options read as switches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.commands import COMMAND_MODULES


@pytest.mark.parametrize("command", ["", *COMMAND_MODULES])
def test_on_off_options_read_as_switches(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"] if command else ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_switches_show_bare_and_default_on_switches_show_their_negation() -> None:
    text = CliRunner().invoke(app, ["adapt", "--help"], env={"COLUMNS": "200"}).output
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│") and len(line.split()) > 1}
    assert "--no-augment" in lines["--augment"]  # on by default: the way to turn it off is shown
    for switch in ("--overwrite", "--resume", "--align", "--json", "--quiet", "--print-config"):
        after = lines[switch].split()[2]  # the word after the switch: its help (or short form), never a value
        assert not after.startswith("<"), lines[switch]
    assert lines["--steps"].split()[2] == "<int>"  # options that take a value still say which


@pytest.mark.parametrize("module", ["cegate_cli", "cegate_cli.cli"])
def test_python_dash_m_runs_the_cli_by_either_module_name(module: str) -> None:
    """`python -m cegate_cli.cli` once exited 0 without a word: cli.py defined main() but never called it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("cegate "), done.stdout + done.stderr
    refused = subprocess.run([sys.executable, "-m", module, "predict", "--device", "gpu"], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip(), refused.stdout + refused.stderr


def test_the_command_list_reads_each_summary_in_one_piece() -> None:
    """`cegate --help` lists each command with its docstring's first paragraph; a line break inside
    it shows as a break mid-sentence in the list."""
    lines = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"}).output.splitlines()
    start = next(i for i, line in enumerate(lines) if "Commands" in line)
    rows = [line for line in lines[start + 1 :] if line.startswith("│")]
    assert [row.split()[1] for row in rows] == list(COMMAND_MODULES), "\n".join(rows)
