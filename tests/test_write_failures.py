"""A write that fails while `adapt` saves (issue 13): disk full or a broken writer is one line naming
the file and what to do, and the previous resume state survives."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from run_folder_helpers import CLI_TRAIN, error_line
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.run import read_manifest
from cegate_cli.run.state import read_state


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


def test_disk_full_while_saving_the_state_keeps_the_previous_one(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cegate_cli.run.state as state_module

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
    assert "[Errno" not in line
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


@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "free disk space"), (errno.EROFS, "on a writable disk")])
def test_predict_on_a_full_or_read_only_disk_is_one_line_without_errno(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str) -> None:
    from run_folder_helpers import small_options

    import cegate_cli.infra.atomic as atomic_module
    from cegate_cli.pipelines.adapt import adapt

    run = adapt(small_options(demo, tmp_path / "run")).run_dir
    out = tmp_path / "maps"
    real = os.replace

    def refuses(source, target, *args, **kwargs):  # the output disk only; everything else as usual
        if str(target).startswith(str(out)):
            raise OSError(code, os.strerror(code), str(target))
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic_module.os, "replace", refuses)
    scene = sorted((demo.target_dir / "images").glob("*.tif"))[0]
    result = CliRunner().invoke(app, ["predict", str(run), str(scene), "-o", str(out), "--vector", "none"])
    assert result.exit_code == 1, result.output  # a failed scene, as for any scene that fails
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "[Errno" not in result.output, result.output
    assert str(scene) in errors[0] and f"cannot write {out}" in errors[0] and os.strerror(code) in errors[0] and fix in errors[0]
