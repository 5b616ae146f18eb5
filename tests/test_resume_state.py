"""`adapt --resume` reads data, never a pickle (issue 13): a crafted run folder runs no code, the
state is a matching safetensors + JSON pair, and resuming stays bit-exact."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from run_folder_helpers import CLI_TRAIN, error_line, small_options
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import RunFolderError
from cegate_cli.pipelines.adapt import adapt
from cegate_cli.run.state import read_state, write_state


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


class _Payload:
    """Unpickling this creates `marker`: what a crafted trainer.pt could do with any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_resume_refuses_a_pickled_trainer_pt_without_loading_it(demo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    adapt(small_options(demo, run), stop_after=2)  # an interrupted run, as --resume expects
    for name in ("trainer.safetensors", "trainer.json"):
        (run / "state" / name).unlink(missing_ok=True)  # (an older cegate left a trainer.pt instead)
    marker = tmp_path / "pwned"
    torch.save({"format": "cegate-train-state/1", "step": _Payload(marker)}, run / "state" / "trainer.pt")
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN, "--resume"])
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert "trainer.pt" in line and "format changed" in line and "--overwrite" in line
    assert not marker.exists()


def test_resume_never_unpickles_and_stays_bit_exact(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = adapt(small_options(demo, tmp_path / "full", steps=6))
    adapt(small_options(demo, tmp_path / "resumed", steps=6), stop_after=3)

    def forbidden(*args, **kwargs):
        raise AssertionError("the resume path unpickled something")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    resumed = adapt(replace(small_options(demo, tmp_path / "resumed", steps=6), resume=True))
    a = load_file(str(tmp_path / "full" / "adapter_last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full.manifest.metrics.val_history == resumed.manifest.metrics.val_history
    # The state holds the Adam step count and the RNG as tensors, the rest as JSON.
    state = read_state(tmp_path / "resumed" / "state")
    assert state["step"] == 6 and state["cpu_rng"].dtype == torch.uint8
    assert all("step" in moments for moments in state["optimizer"].values())


def test_state_writer_and_reader_are_a_matching_pair(tmp_path: Path) -> None:
    state = {
        "step": 3,
        "history": [(1, 0.1), (2, float("nan"))],
        "nested": {"t": torch.arange(4.0), "none": None},
        "scalar": torch.tensor(7.0),
        "rng": torch.random.get_rng_state(),
    }
    write_state(tmp_path / "state", state)
    back = read_state(tmp_path / "state")
    assert back["step"] == 3 and back["history"][0] == [1, 0.1] and back["history"][1][1] != back["history"][1][1]
    assert torch.equal(back["nested"]["t"], state["nested"]["t"]) and back["nested"]["none"] is None
    assert back["scalar"].shape == () and torch.equal(back["rng"], state["rng"])
    # Tensors of another save under the same record: refused, never mixed.
    tensors = tmp_path / "state" / "trainer.safetensors"
    other = tmp_path / "other"
    write_state(other, state)
    shutil.copy(other / "trainer.safetensors", tensors)
    with pytest.raises(RunFolderError, match="damaged resume state"):
        read_state(tmp_path / "state")


def test_a_crash_between_the_two_renames_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cegate_cli.run.state as state_module

    write_state(tmp_path, {"step": 2, "w": torch.ones(3)})
    real = state_module.write_text_atomic

    def crash(*args, **kwargs):  # the tensors are renamed into place, the record never follows
        raise KeyboardInterrupt

    monkeypatch.setattr(state_module, "write_text_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        write_state(tmp_path, {"step": 4, "w": torch.zeros(3)})
    monkeypatch.setattr(state_module, "write_text_atomic", real)
    back = read_state(tmp_path)
    assert back["step"] == 2 and torch.equal(back["w"], torch.ones(3))
    write_state(tmp_path, {"step": 4, "w": torch.zeros(3)})  # the next save completes and tidies up
    assert read_state(tmp_path)["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer.json", "trainer.safetensors"]
