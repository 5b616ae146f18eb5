"""What the run-folder safety tests share (issue 13): a tiny training configuration, the same as
`cegate adapt` flags, and checks for the one-line errors users get."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions

SMALL = TrainConfig(
    steps=4,
    batch_size=2,
    crop=32,
    lr=2e-3,
    warmup_steps=1,
    val_every=2,
    val_crops=2,
    save_every=2,
    fisher_samples=2,
    select="3",
    seed=3,
    device="cpu",
)
CLI_TRAIN = [
    "--backbone",
    "tiny",
    "--steps",
    "4",
    "--crop",
    "32",
    "--batch-size",
    "2",
    "--fisher-samples",
    "2",
    "--select",
    "3",
    "--val-every",
    "2",
    "--save-every",
    "2",
    "--seed",
    "3",
    "--device",
    "cpu",
]
"""SMALL as command-line flags."""


def small_options(demo, out: Path, **changes) -> AdaptOptions:
    return AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=replace(SMALL, **changes))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: "untouched" means equal snapshots."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(output: str) -> str:
    """The output's only non-empty line, which must be a cegate error line."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    return lines[0]
