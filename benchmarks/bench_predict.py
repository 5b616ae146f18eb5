"""Benchmark whole-scene prediction: wall time against the model's own time, and peak memory.

    python benchmarks/bench_predict.py --sizes 2048 16384 --json bench_predict.json
    python benchmarks/bench_predict.py --sizes 2048 2048x16384 16384   # also a tall scene

For each size N (or WxH), a fresh subprocess writes a 4-band uint16 GeoTIFF strip by strip (so the
generator itself stays small), and another fresh subprocess runs `predict_scene` with a small
real convolutional segmentation model (10 classes), and a third times the bare model forward
pass on as many tiles of the same shape and batch size. Peak memory is a subprocess's maximum RSS
(getrusage), next to its RSS just before the run started (imports, model, thread pools); for
prediction the difference includes the model's own activations for one batch, which the bare
forward pass's figure shows on its own.

What the numbers should show: wall time close to the model's time (the loop adds reading,
softmax, blending and writing), and peak memory that does not grow with the scene. CPU seconds
(all threads) are reported next to wall seconds because they suffer less when other work
shares the machine; the 1-minute load average says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("patch", "conv")


def build_model(kind: str, bands: int, classes: int):
    """Two small real models: `patch` looks like a ViT head (4x4 patches in, upsampled logits
    out); `conv` is three full-resolution convolutions, about 4x the compute."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if kind == "patch":
        model = nn.Sequential(
            nn.Conv2d(bands, 32, 4, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, classes, 1),
            nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False),
        )
    elif kind == "conv":
        model = nn.Sequential(
            nn.Conv2d(bands, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, classes, 1),
        )
    else:
        raise ValueError(kind)
    return model.eval()


def parse_size(text: str) -> tuple[int, int]:
    """'2048' -> (2048, 2048); '2048x16384' -> (width 2048, height 16384)."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def generate(path: Path, width: int, height: int, bands: int) -> dict:
    """Write a smooth-plus-noise uint16 scene strip by strip; returns time and peak RSS."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 5000000.0, 10.0, 10.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        nodata=0,
        bigtiff="yes",
    )
    columns = np.arange(width, dtype=np.float32)
    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(path, "w", **profile) as dst:
        for row in range(0, height, 512):  # one row of blocks at a time, flushed as it completes
            rows = np.arange(row, min(height, row + 512), dtype=np.float32)[:, None]
            strip = np.empty((bands, len(rows), width), dtype=np.uint16)
            for b in range(bands):
                field = 2000 + 900 * np.sin(columns / (97.0 + 13 * b)) * np.cos(rows / (131.0 + 7 * b))
                strip[b] = field + rng.integers(0, 200, size=(len(rows), width), dtype=np.uint16)
            dst.write(strip, window=Window(0, row, width, len(rows)))
    return {"generate_s": time.perf_counter() - started, "generate_peak_rss_mib": _peak_rss_mib()}


def _setup(args: argparse.Namespace):
    import psutil
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.bands, args.classes)
    with torch.inference_mode():  # start kernels and thread pools; small, so later peaks are the run's
        model(torch.zeros(1, args.bands, 64, 64))
    return model, psutil.Process().memory_info().rss / 2**20


def run_prediction(scene: Path, out: Path, args: argparse.Namespace) -> dict:
    """predict_scene on the scene, in this fresh process."""
    from cegate_cli.data.classes import ClassTable
    from cegate_cli.data.stats import BandStats
    from cegate_cli.predict import predict_scene

    model, rss_before = _setup(args)
    stats = BandStats(tuple(f"b{i}" for i in range(args.bands)), (2000.0,) * args.bands, (600.0,) * args.bands)
    classes = ClassTable.from_ids(list(range(args.classes)))
    cpu_started, started = _cpu_seconds(), time.perf_counter()
    result = predict_scene(
        model,
        scene,
        out,
        band_indexes=tuple(range(1, args.bands + 1)),
        stats=stats,
        class_table=classes,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
    )
    return {
        "tiles": result.tiles,
        "predict_s": time.perf_counter() - started,
        "predict_cpu_s": _cpu_seconds() - cpu_started,
        "rss_before_predict_mib": rss_before,
        "peak_rss_mib": _peak_rss_mib(),
        "blend_peak_mib": result.blend_peak_mib,
        "mask_mib": out.stat().st_size / 2**20,
        "load_average_1min": os.getloadavg()[0],
    }


def run_forward(width: int, height: int, args: argparse.Namespace) -> dict:
    """The bare model on as many tiles of the same shape, same batch size, in a fresh process."""
    import torch

    from cegate_cli.predict import plan_tiles

    model, rss_before = _setup(args)
    plan = plan_tiles(height, width, tile=args.tile, overlap=args.overlap)
    batch = torch.randn(args.batch_size, args.bands, plan.tile_height, plan.tile_width)
    full_batches, rest = divmod(len(plan), args.batch_size)
    cpu_started, started = _cpu_seconds(), time.perf_counter()
    with torch.inference_mode():
        for _ in range(full_batches):
            model(batch)
        if rest:
            model(batch[:rest])
    return {
        "forward_s": time.perf_counter() - started,
        "forward_cpu_s": _cpu_seconds() - cpu_started,
        "forward_peak_minus_before_mib": _peak_rss_mib() - rss_before,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less disturbed than wall time when
    other work shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _subprocess(role: str, args: argparse.Namespace, **extra: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--tile",
        str(args.tile),
        "--overlap",
        str(args.overlap),
        "--batch-size",
        str(args.batch_size),
        "--classes",
        str(args.classes),
        "--bands",
        str(args.bands),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
    ]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", value]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{role} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2048", "16384"], help="N for N x N, or WxH")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--model", choices=MODELS, default="patch", help="patch: cheap, ViT-shaped (default, ~6 min for both sizes); conv: ~4x the compute")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=None, help="where scenes are written (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=Path("bench_predict.json"))
    parser.add_argument("--role", choices=["main", "generate", "predict", "forward"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "generate":
        print(json.dumps(generate(args.scene, *parse_size(args.size), args.bands)))
        return
    if args.role == "predict":
        print(json.dumps(run_prediction(args.scene, args.out, args)))
        return
    if args.role == "forward":
        print(json.dumps(run_forward(*parse_size(args.size), args)))
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in args.sizes:
            scene, out = Path(tmp) / f"scene_{size}.tif", Path(tmp) / f"scene_{size}.mask.tif"
            width, height = parse_size(size)
            row = {"size": f"{width}x{height}", **_subprocess("generate", args, scene=str(scene), size=size)}
            row.update(_subprocess("predict", args, scene=str(scene), out=str(out)))
            row.update(_subprocess("forward", args, size=size))
            row["ratio"] = row["predict_s"] / row["forward_s"]
            row["cpu_ratio"] = row["predict_cpu_s"] / row["forward_cpu_s"]
            row["peak_minus_before_mib"] = row["peak_rss_mib"] - row["rss_before_predict_mib"]
            rows.append(row)
            scene.unlink()
            print(f"  {size} done in {row['predict_s']:.1f} s", file=sys.stderr)

    header = (
        f"{'size':>11} {'tiles':>6} {'predict s':>10} {'model s':>8} {'ratio':>6} {'cpu ratio':>9} "
        f"{'RSS before':>11} {'peak RSS':>9} {'peak-before':>12} {'model only':>11} {'blend':>6} {'load':>5}"
    )
    print(header + "\n" + " " * 57 + "(MiB; 'model only' is the bare forward pass's peak-before)")
    for r in rows:
        print(
            f"{r['size']:>11} {r['tiles']:>6} {r['predict_s']:>10.1f} {r['forward_s']:>8.1f} {r['ratio']:>6.2f} "
            f"{r['cpu_ratio']:>9.2f} {r['rss_before_predict_mib']:>11.0f} {r['peak_rss_mib']:>9.0f} "
            f"{r['peak_minus_before_mib']:>12.0f} {r['forward_peak_minus_before_mib']:>11.0f} "
            f"{r['blend_peak_mib']:>6.0f} {r['load_average_1min']:>5.1f}"
        )
    import torch

    report = {
        "settings": {k: v for k, v in vars(args).items() if k in ("tile", "overlap", "batch_size", "classes", "bands", "model", "threads")},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": rows,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
