"""`adapt`, `predict` and `evaluate` under torchrun: two CPU processes (gloo) on tiny data.

Every multi-process run here is a real `torchrun --nproc-per-node 2 --standalone` subprocess
(started as `python -m torch.distributed.run`, the module behind the `torchrun` script, so it
uses this interpreter). With CEGATE_RANK_LOG set, each rank appends what it selected, wrapped
and wrote to <folder>/rank<N>.jsonl, which is how these tests see which rank did what.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_rasters import write_tif
from safetensors.torch import load_file

from cegate_cli.data.crops import CropBatch, CropSampler
from cegate_cli.errors import RunFolderError
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.pipelines.inference import MapOptions, evaluate_run
from cegate_cli.run import read_manifest

pytestmark = pytest.mark.slow  # real subprocesses (torchrun, kill, signals): the README's full run covers them

STEPS, BATCH, FISHER = 6, 2, 3
RUN_WRITES = sorted(["prepare_run_dir", "write_manifest", "write_run_config", "save_weights", "save_weights", "write_manifest"])
"""What rank 0 writes to a run folder, each exactly once: the folder, run.json at the start and the
end, config.yaml (the command line's options) at the start, best and last weights."""
ADAPT_FLAGS = [
    "--backbone",
    "tiny",
    "--steps",
    str(STEPS),
    "--batch-size",
    str(BATCH),
    "--crop",
    "32",
    "--fisher-samples",
    str(FISHER),
    "--select",
    "4",
    "--reselect-every",
    "3",
    "--val-every",
    "3",
    "--lr",
    "2e-3",
    "--seed",
    "3",
    "--device",
    "cpu",
]


def _labeled_folder(root: Path, count: int = 4, size: int = 64) -> Path:
    """Four-band scenes whose every pixel is labeled (3 classes by brightness), no nodata.

    Fully labeled crops matter for the equality test: each rank's loss is the mean over its own
    labeled pixels and DDP averages the ranks' gradients, which equals the gradient of the mean
    over the whole global batch only when every rank's batch holds the same number of them.
    """
    rng = np.random.default_rng(11)
    for i in range(count):
        coarse = rng.random((4, size // 16, size // 16)).astype(np.float32)
        image = np.kron(coarse, np.ones((16, 16), np.float32)) + 0.05 * rng.random((4, size, size)).astype(np.float32)
        brightness = image.mean(axis=0)
        mask = np.digitize(brightness, np.quantile(brightness, [1 / 3, 2 / 3])).astype(np.uint8)
        write_tif(root / "images" / f"scene_{i}.tif", (image * 1000).astype(np.uint16), descriptions=("blue", "green", "red", "nir"))
        write_tif(root / "masks" / f"scene_{i}.tif", mask)
    return root


def _torchrun(args: list[str], cwd: Path, rank_log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CEGATE_RANK_LOG": str(rank_log), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _events(rank_log: Path, rank: int, event: str | None = None) -> list[dict]:
    path = rank_log / f"rank{rank}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return [line for line in lines if event is None or line["event"] == event]


@pytest.fixture(autouse=True)
def one_thread():
    """Like the torchrun workers (OMP_NUM_THREADS=1): tiny tensors on two shared cores run up to
    ten times slower with two threads spinning against the worker processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class TwoRankRun:
    data: Path
    run: Path
    log: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> TwoRankRun:
    root = tmp_path_factory.mktemp("ddp")
    data = _labeled_folder(root / "data")
    log = root / "ranklog"
    result = _torchrun(["-m", "cegate_cli", "adapt", str(data), "-o", str(root / "run"), *ADAPT_FLAGS], root, log)
    assert result.returncode == 0, result.stderr[-3000:]
    return TwoRankRun(data, root / "run", log, result)


def test_two_rank_adapt_writes_the_run_once_and_both_ranks_select_alike(two_ranks: TwoRankRun) -> None:
    run, log = two_ranks.run, two_ranks.log
    manifest = read_manifest(run)
    assert manifest.status == "complete"
    assert manifest.timing.processes == 2
    assert (run / "adapter.safetensors").is_file() and (run / "adapter_last.safetensors").is_file()
    assert (run / "state" / "trainer.safetensors").is_file() and (run / "state" / "trainer.json").is_file()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    # Only rank 0 touched the run folder: each of its writes once, rank 1 none.
    writes = [e["call"] for e in _events(log, 0, "on_main")]
    assert sorted(writes) == RUN_WRITES
    assert _events(log, 1, "on_main") == []
    # The same selections, from the same pooled scores, on both ranks (step 0 and the reselection at 3).
    selections = [_events(log, rank, "selection") for rank in (0, 1)]
    assert [s["step"] for s in selections[0]] == [0, 3]
    for mine, theirs in zip(*selections):
        assert mine["selected"] == theirs["selected"] and mine["normalized"] == theirs["normalized"]
        assert mine["samples"] == 2 * FISHER  # pooled over both ranks' Fisher crops
    assert [s["selected"] for s in selections[0]] == [[list(k) for k in s.selected] for s in manifest.selections]
    # Each selection that changed the trained set rebuilt the DDP wrapper on both ranks, and DDP
    # synchronised exactly the final modules and the head: no backbone tensor.
    wraps = [_events(log, rank, "ddp_wrap") for rank in (0, 1)]
    changed = [s.step for i, s in enumerate(manifest.selections) if i == 0 or s.selected != manifest.selections[i - 1].selected]
    assert [w["step"] for w in wraps[0]] == [w["step"] for w in wraps[1]] == changed
    assert wraps[0][-1]["numel"] == manifest.parameters.modules_final + manifest.parameters.decoder
    assert two_ranks.result.stdout.count("run folder:") == 1  # the summary is printed by rank 0 only


class _TwoRanksInOne(CropSampler):
    """One process drawing what ranks 0 and 1 draw at each step: the same global batch."""

    def sample(self, step: int, batch_size: int, seed: int, rank: int = 0) -> CropBatch:
        assert rank == 0
        parts = [super(_TwoRanksInOne, self).sample(step, batch_size, seed, r) for r in (0, 1)]
        labeled = [int((p.masks != 255).sum()) for p in parts]
        assert labeled[0] == labeled[1], "equal labeled pixels per rank is what makes the two losses equal"
        return CropBatch(
            torch.cat([p.images for p in parts]),
            torch.cat([p.masks for p in parts]),
            torch.cat([p.valid for p in parts]),
            parts[0].windows + parts[1].windows,
        )


SGD_LR = 0.05
SGD_SCRIPT = """
import sys
from dataclasses import replace
from pathlib import Path
import torch
import cegate_cli.train.supervised as supervised
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest


def plain_sgd(named, lr, weight_decay, previous=None, previous_names=None):
    return torch.optim.SGD(list(named.values()), lr=lr)


supervised.build_adamw = plain_sgd
data, reference, out, lr = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
manifest = read_manifest(reference)
options = AdaptOptions(source=data, out=out, backbone="tiny", kinds=manifest.kinds, toolbox=manifest.toolbox,
                       train=replace(manifest.training, lr=lr, loss="ce"))
assert adapt(options).outcome.completed
"""
"""Trains like the CLI run but with plain SGD (no momentum, no weight decay): a step is then
lr x the synchronised gradient, so the weights of two runs differ by lr x their gradients'
rounding differences, nothing more. Adam divides each gradient by its own running magnitude,
which turns a rounding difference in a near-zero gradient into a step of about lr (seen: 1.3e-3
after six steps with lr 2e-3), so it cannot show equivalence at any meaningful tolerance."""


def _sgd_run(script_dir: Path, two_ranks: TwoRankRun, out: Path, *, torchrun: bool) -> dict[str, torch.Tensor]:
    script = script_dir / "sgd_adapt.py"
    script.write_text(SGD_SCRIPT)
    args = [str(script), str(two_ranks.data), str(two_ranks.run), str(out), str(SGD_LR)]
    if torchrun:
        result = _torchrun(args, script_dir, script_dir / "log")
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        result = subprocess.run([sys.executable, *args], cwd=script_dir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(str(out / "adapter_last.safetensors"))


def test_two_ranks_train_what_one_process_trains_on_the_same_global_batch(two_ranks, tmp_path, monkeypatch) -> None:
    """Two ranks under DDP and one process drawing both ranks' crops at every step see the same
    global batch, so with plain SGD and plain cross-entropy (a class-weighted mean or a Dice term
    is normalised per rank's batch, which no averaging of gradients undoes) they take the same
    steps up to float32 rounding: DDP averages
    the two ranks' mean gradients, one process takes the gradient of one mean over both halves
    (equal in exact arithmetic: equal labeled pixel counts, GroupNorm heads, no dropout), and the
    Fisher sums are pooled in another order. So: identical selections, Fisher scores equal to
    1e-4 relative, weights equal to 1e-5; and a single process drawing its double batch from
    rank 0's stream alone (other crops) differs by far more than that tolerance."""
    ddp_out, plain_out, emulated_out = tmp_path / "ddp", tmp_path / "plain", tmp_path / "emulated"
    ddp = _sgd_run(tmp_path, two_ranks, ddp_out, torchrun=True)
    plain = _sgd_run(tmp_path, two_ranks, plain_out, torchrun=False)  # one stream, batch 2 x 2 of other crops
    monkeypatch.setattr("cegate_cli.pipelines.adapt.CropSampler", _TwoRanksInOne)
    monkeypatch.setattr("cegate_cli.train.supervised.build_adamw", lambda named, lr, *_: torch.optim.SGD(list(named.values()), lr=lr))
    manifest = read_manifest(two_ranks.run)
    adapt(
        AdaptOptions(
            source=two_ranks.data,
            out=emulated_out,
            backbone="tiny",
            kinds=manifest.kinds,
            toolbox=manifest.toolbox,
            train=replace(manifest.training, lr=SGD_LR, loss="ce"),
        )
    )
    emulated = load_file(str(emulated_out / "adapter_last.safetensors"))
    ddp_run, emulated_run = read_manifest(ddp_out), read_manifest(emulated_out)
    assert ddp_run.timing.processes == 2 and emulated_run.timing.processes == 1
    assert [s.selected for s in emulated_run.selections] == [s.selected for s in ddp_run.selections]
    for ours, theirs in zip(ddp_run.selections, emulated_run.selections):
        assert ours.scores.samples == theirs.scores.samples == 2 * FISHER
        assert ours.scores.normalized == pytest.approx(theirs.scores.normalized, rel=1e-4)
    assert ddp.keys() == emulated.keys()
    tolerance = 1e-5
    worst = max(float((ddp[k] - emulated[k]).abs().max()) for k in ddp)
    assert worst < tolerance, worst
    trained = [k for k in ddp if k in plain and not k.startswith("patch_embed.")]
    assert max(float((ddp[k] - plain[k]).abs().max()) for k in trained) > 10 * tolerance
    frozen = [k for k in ddp if k.startswith("patch_embed.")]
    assert frozen and all(torch.equal(ddp[k], emulated[k]) for k in frozen)  # never trained, never synchronised
    assert not torch.distributed.is_initialized()  # without torchrun no process group is ever created


RESUME_SCRIPT = """
import sys
from dataclasses import replace
from pathlib import Path
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest

data, reference, out = map(Path, sys.argv[1:4])
manifest = read_manifest(reference)
train = replace(manifest.training, save_every=2)  # the CLI saved only at the end; saving changes no weight
options = AdaptOptions(source=data, out=out, backbone="tiny", kinds=manifest.kinds, toolbox=manifest.toolbox, train=train)
assert not adapt(options, stop_after=3).outcome.completed  # state saved at step 2; step 3 is lost
assert adapt(replace(options, resume=True)).outcome.completed
"""


def test_resume_under_torchrun_ends_where_the_uninterrupted_run_ends(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    script = tmp_path / "interrupt_and_resume.py"
    script.write_text(RESUME_SCRIPT)
    result = _torchrun([str(script), str(two_ranks.data), str(two_ranks.run), str(tmp_path / "resumed")], tmp_path, tmp_path / "log")
    assert result.returncode == 0, result.stderr[-3000:]
    full = load_file(str(two_ranks.run / "adapter_last.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "adapter_last.safetensors"))
    assert full.keys() == resumed.keys()
    for name in full:  # same ranks, same collectives, same order: bit for bit
        assert torch.equal(full[name], resumed[name]), name


def test_resuming_a_two_rank_run_in_one_process_is_refused(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    """Another process count draws other crops (each rank its own): the resumed run would quietly
    differ from the uninterrupted one, so it is refused and the run folder is left as it was."""
    run = tmp_path / "run"
    shutil.copytree(two_ranks.run, run)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    manifest = read_manifest(run)
    options = AdaptOptions(
        source=two_ranks.data, out=run, backbone="tiny", kinds=manifest.kinds, toolbox=manifest.toolbox, train=manifest.training, resume=True
    )
    with pytest.raises(RunFolderError, match=r"trained by 2 process\(es\), now there are 1"):
        adapt(options)
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_two_rank_self_training_on_an_unlabeled_target(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    """`adapt SOURCE --target TARGET` under torchrun: the EMA teacher follows the synchronised
    student on every rank, so the ranks keep selecting alike (Fisher on pooled source crops and
    pseudo-labels), and rank 0 alone writes the run."""
    target = tmp_path / "target" / "images"
    target.mkdir(parents=True)
    for scene in sorted((two_ranks.data / "images").glob("*.tif")):
        (target / scene.name).write_bytes(scene.read_bytes())
    log, run = tmp_path / "log", tmp_path / "run"
    result = _torchrun(["-m", "cegate_cli", "adapt", str(two_ranks.data), "--target", str(target.parent), "-o", str(run), *ADAPT_FLAGS], tmp_path, log)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(run)
    assert manifest.status == "complete" and manifest.mode == "source+target"
    assert manifest.timing.processes == 2
    assert manifest.adaptation.pseudo_labels  # the teacher labelled target crops
    selections = [_events(log, rank, "selection") for rank in (0, 1)]
    # Source-first: rescoring every 3 steps in the source phase (0, 3), then at its end (6) either the
    # best step's modules come back or the target's Fisher scores choose; the ranks agree on each.
    assert [s["step"] for s in selections[0]] == [0, 3, 6]
    assert [s["selected"] for s in selections[0]] == [s["selected"] for s in selections[1]]
    assert [s["selected"] for s in selections[0]] == [[list(k) for k in s.selected] for s in manifest.selections]
    assert sorted(e["call"] for e in _events(log, 0, "on_main")) == RUN_WRITES
    assert _events(log, 1, "on_main") == []


def test_two_rank_predict_writes_each_of_four_scenes_once_and_a_failure_fails_every_rank(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for scene in sorted((two_ranks.data / "images").glob("*.tif")):
        (scenes / scene.name).write_bytes(scene.read_bytes())
    (scenes / "broken.tif").write_bytes((scenes / "scene_0.tif").read_bytes()[:2000])  # truncated: fails alone
    out = tmp_path / "maps"
    args = ["-m", "cegate_cli", "predict", str(two_ranks.run), str(scenes), "-o", str(out), "--tile", "64", "--overlap", "16", "--device", "cpu"]
    result = _torchrun(args, tmp_path, tmp_path / "log")
    assert result.returncode != 0  # one scene failed
    events = {rank: _events(tmp_path / "log", rank, "mapped") for rank in (0, 1)}
    # Inputs in order: broken, scene_0..3; rank r maps inputs r, r + 2, ...: each scene whole on one rank.
    assert [(Path(e["source"]).name, e["status"]) for e in events[0]] == [("broken.tif", "failed"), ("scene_1.tif", "done"), ("scene_3.tif", "done")]
    assert [(Path(e["source"]).name, e["status"]) for e in events[1]] == [("scene_0.tif", "done"), ("scene_2.tif", "done")]
    written = [Path(p).name for rank in (0, 1) for e in events[rank] if e["status"] == "done" for p in e["outputs"]]
    expected = [f"scene_{i}{suffix}" for i in range(4) for suffix in (".mask.tif", ".geojson")]
    assert sorted(written) == sorted(expected)  # every output by exactly one rank
    legends = [f"scene_{i}{suffix}" for i in range(4) for suffix in (".mask.qml", ".mask.tif.aux.xml", ".qml")]  # beside each mask and polygon file
    assert sorted(p.name for p in out.iterdir()) == sorted(expected + legends)
    # Rank 0 prints the summary of both ranks' scenes, once, in input order.
    lines = [line for line in result.stdout.splitlines() if ".mask.tif" in line]
    assert [Path(line.split()[0]).name for line in lines] == [f"scene_{i}.mask.tif" for i in range(4)]
    assert result.stderr.count("4 done, 0 skipped, 1 failed") == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    # Rank 1 failed nothing itself, yet holds the whole summary, so it exits 1 as well.
    assert [(e["done"], e["failed"]) for rank in (0, 1) for e in _events(tmp_path / "log", rank, "summary")] == [(4, 1), (4, 1)]


def test_two_rank_vector_merge_is_written_once_from_both_ranks_scenes(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    import geopandas as gpd

    out = tmp_path / "maps"
    args = [
        "-m",
        "cegate_cli",
        "predict",
        str(two_ranks.run),
        str(two_ranks.data / "images"),
        "-o",
        str(out),
        "--tile",
        "64",
        "--overlap",
        "16",
        "--device",
        "cpu",
        "--vector",
        "gpkg",
        "--vector-merge",
    ]
    result = _torchrun(args, tmp_path, tmp_path / "log")
    assert result.returncode == 0, result.stderr[-3000:]
    merged = gpd.read_file(out / "polygons.gpkg", layer="polygons")
    assert list(dict.fromkeys(merged["scene"])) == [f"scene_{i}" for i in range(4)]  # input order, both ranks' scenes
    assert len(merged) == sum(len(gpd.read_file(out / f"scene_{i}.gpkg", layer=f"scene_{i}")) for i in range(4))
    assert result.stdout.splitlines().count(str(out / "polygons.gpkg")) == 1  # printed once, by rank 0
    assert [len(_events(tmp_path / "log", rank, "on_main")) for rank in (0, 1)] == [1, 0]  # written by rank 0 alone


def test_two_rank_evaluate_equals_one_process(two_ranks: TwoRankRun, tmp_path: Path) -> None:
    args = ["-m", "cegate_cli", "evaluate", str(two_ranks.run), str(two_ranks.data), "--tile", "64", "--overlap", "16", "--device", "cpu", "--json"]
    result = _torchrun(args, tmp_path, tmp_path / "log")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # printed once, by rank 0
    assert {Path(e["source"]).name for rank in (0, 1) for e in _events(tmp_path / "log", rank, "mapped")} == {f"scene_{i}.tif" for i in range(4)}
    single, _ = evaluate_run(two_ranks.run, two_ranks.data, options=MapOptions(tile=64, overlap=16, device="cpu"))
    expected = single.to_dict(read_manifest(two_ranks.run).classes)
    assert report["pixels"] == expected["pixels"] == 4 * 64 * 64
    assert [c["pixels"] for c in report["classes"]] == [c["pixels"] for c in expected["classes"]]
    assert [c["iou"] for c in report["classes"]] == pytest.approx([c["iou"] for c in expected["classes"]], abs=1e-12)
    assert [f["image"] for f in report["files"]] == [f["image"] for f in expected["files"]]
