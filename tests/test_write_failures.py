"""A write that fails while `adapt` saves (issue 13): disk full or a broken writer is one line naming
the file and what to do, and the previous resume state survives."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.run import read_manifest
from cegate_cli.train.state import read_state
from run_folder_helpers import CLI_TRAIN, error_line


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


def test_disk_full_while_saving_the_state_keeps_the_previous_one(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cegate_cli.train.state as state_module

    real = state_module.save_file
    calls = {"n": 0}

    def fills_the_disk(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the state of step 4; step 2's is on disk
            with open(filename, "wb") as handle:
                handle.write(b"\0" * 100)  # a partial file, as a full disk leaves it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(state_module, "save_file", fills_the_disk)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN, "--steps", "6"])
    assert result.exit_code == 2, result.output
    line = error_line(result.output.splitlines()[-1])
    assert str(run / "state") in line and "No space left on device" in line and "free disk space" in line
    assert read_state(run / "state")["step"] == 2
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert read_manifest(run).status == "failed"  # not "training", which reads as still running
    refused = CliRunner().invoke(app, ["predict", str(run), str(demo.target_dir / "images"), "-o", str(tmp_path / "maps")])
    assert refused.exit_code == 2 and "status 'failed'" in error_line(refused.output)


def test_a_failing_weights_write_is_one_line(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cegate_cli.run.weights as run_module

    def broken(*args, **kwargs):  # what torch and safetensors say when the disk fills mid-file
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4416 vs 4304")

    monkeypatch.setattr(run_module, "save_file", broken)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN])
    assert result.exit_code == 2, result.output
    line = error_line(result.output.splitlines()[-1])
    assert "adapter" in line and "unexpected pos" in line and "free disk space" in line
    assert read_state(run / "state")["step"] == 4  # the finished training can still be saved: --resume
