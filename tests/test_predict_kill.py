"""`kill -9` during `predict` (issue 13): no partial output under a final name, and the next run
removes the dead writer's temporaries, never those of a writer that still runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cegate_cli.infra.atomic import _HOST, atomic_path, sweep_stale_temporaries
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt

pytestmark = pytest.mark.slow  # real subprocesses (torchrun, kill, signals): the README's full run covers them

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAIN = TrainConfig(steps=2, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, save_every=2, fisher_samples=2, select="2", seed=0, device="cpu")


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=2, n_target=1, size=64, seed=3)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp-" in p.name] if folder.is_dir() else []


def _big_scene(demo, path: Path, side: int) -> Path:
    """A scene with the demo's bands, large enough that mapping it takes a few seconds."""
    template = sorted((demo.target_dir / "images").glob("*.tif"))[0]
    with rasterio.open(template) as src:
        profile = src.profile | {"width": side, "height": side, "tiled": True, "blockxsize": 256, "blockysize": 256}
        descriptions = src.descriptions
        low, high = float(src.read().min()), float(src.read().max())
    data = np.random.default_rng(0).uniform(low, high, (profile["count"], side, side)).astype(profile["dtype"])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


def test_kill_9_during_predict_leaves_no_final_output_and_the_next_run_clears_up(demo, tmp_path: Path) -> None:
    run = adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "run", backbone="tiny", train=TRAIN)).run_dir
    scene = _big_scene(demo, tmp_path / "big.tif", 768)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "cegate_cli",
        "predict",
        str(run),
        str(scene),
        "-o",
        str(out),
        "--tile",
        "256",
        "--overlap",
        "32",
        "--device",
        "cpu",
        "--vector",
        "none",
        "--confidence",
    ]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 120
    while not _temporaries(out) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if victim.poll() is not None:
        pytest.skip("predict finished before it could be killed")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    left = _temporaries(out)
    assert left and all(f"tmp-{victim.pid}@" in p.name for p in left)  # the dead writer's, by name
    assert not (out / "big.mask.tif").exists() and not (out / "big.confidence.tif").exists()
    again = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (out / "big.mask.tif").is_file() and (out / "big.confidence.tif").is_file()
    assert _temporaries(out) == []


def test_a_live_writers_temporary_is_never_touched(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live = tmp_path / f".a.mask.tif.tmp-{sleeper.pid}@{_HOST}-x1.tif"
        mine = tmp_path / f".b.mask.tif.tmp-{os.getpid()}@{_HOST}-x2.tif"
        other_host = tmp_path / f".c.mask.tif.tmp-{dead.pid}@{'0' * 8 if _HOST != '0' * 8 else '1' * 8}-x3.tif"
        stale = tmp_path / f".d.mask.tif.tmp-{dead.pid}@{_HOST}-x4.tif"
        stale_sidecar = tmp_path / f"{stale.name}.aux.xml"
        for path in (live, mine, other_host, stale, stale_sidecar):
            path.write_bytes(b"partial")
        removed = sweep_stale_temporaries(tmp_path, force=True)
        assert sorted(removed) == sorted([stale, stale_sidecar])
        assert live.exists() and mine.exists() and other_host.exists()
        with atomic_path(tmp_path / "e.txt") as temporary:  # this process's own names carry its PID
            assert re.search(rf"\.tmp-{os.getpid()}@{_HOST}-", temporary.name)
            temporary.write_text("done")
    finally:
        sleeper.kill()
        sleeper.wait()
