"""Benchmark the backbone families' cost: training step time, prediction throughput, process memory.

    python benchmarks/bench_families.py                               # every family, NAIP tiles
    python benchmarks/bench_families.py --families tiny galileo-nano --steps 10 --out /tmp/f.md

What a user's machine sees for `adapt` and `predict` with each family at the defaults (fisher-cost,
linear-pixel head, crop 128, batch 4), on real NAIP tiles (red, green, blue, nir):

- `tiny` and `galileo-nano`: the embedded weights;
- `prithvi-eo-2-tiny` and `clay-v1`: random weights at the real models' sizes, in the authors' file
  layouts (the Hub is not reachable here; weights do not change the cost). Prithvi-EO-2.0 tiny-TL:
  config.json and `Prithvi_EO_V2_tiny_TL.pt` with its real tensor names and shapes; Clay v1.5: the
  encoder's keys at the authors' `large` size as `clay-v1.5.safetensors`.

Every measurement runs in a fresh subprocess, so its peak resident memory (`ru_maxrss`: Python,
torch, the model and the work, as `top` would show) is its own. Training: `adapt` for `--steps`
steps; the step time is run.json's train seconds over the steps (Fisher scoring and validation
are reported apart by the run and not included). Prediction: `predict` over `--scenes` NAIP test
tiles, pixels per second over the whole call (loading the run included). Prompt tuning: the same
family with `--modules lora,adapter,earth,prompt` against `lora,adapter,earth`, both with
`--selection all` (every module active, so every block's attention takes the prompts: the
worst case); both runs are loaded as `predict` loads them (LoRA merged) in one process, and
their forward passes on the same batch of `predict`'s default tiles alternate, `--reps` each:
the ratio of the medians is the prompt kind's predict cost, free of file reading and of load
that changes between the two.
The markdown is generated from the measurements; nothing in it is typed in by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report_block import cpu_name

REPO = Path(__file__).resolve().parent.parent
FAMILIES = ("tiny", "galileo-nano", "prithvi-eo-2-tiny", "clay-v1")
RANDOM = ("prithvi-eo-2-tiny", "clay-v1")
TOOLBOX = "lora,adapter,earth"
WITH_PROMPT = "lora,adapter,earth,prompt"


# -- backbones with random weights in the authors' layouts ------------------------------------------


def random_backbone(family: str, folder: Path) -> str:
    """A backbone spec for `family`: the alias itself when embedded, else a folder made here."""
    if family not in RANDOM:
        return family
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO / "tests"))
    folder.mkdir(parents=True, exist_ok=True)
    if family == "prithvi-eo-2-tiny":
        from hub_repos import TINY_TL_WEIGHTS, tiny_tl_checkpoint, tiny_tl_config

        (folder / "config.json").write_text(json.dumps(tiny_tl_config(depth=12)), encoding="utf-8")
        torch.save(tiny_tl_checkpoint(depth=12), folder / TINY_TL_WEIGHTS)
    else:
        from cegate_cli.backbone.clay import AUTHORS_SIZES, ClayEncoder, authors_state_dict

        torch.manual_seed(0)
        encoder = ClayEncoder(AUTHORS_SIZES["large"])
        save_file({"model.encoder." + k: v.contiguous() for k, v in authors_state_dict(encoder).items()}, str(folder / "clay-v1.5.safetensors"))
    return str(folder)


def tile_folder(data: Path, split: str, count: int, into: Path, labeled: bool) -> Path:
    """The first `count` tiles of NAIP's `split` (by name), linked into a folder of their own."""
    (into / "images").mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in (data / split / "images").iterdir())[:count]
    for name in names:
        (into / "images" / name).symlink_to(data / split / "images" / name)
        if labeled:
            (into / "masks").mkdir(exist_ok=True)
            (into / "masks" / name).symlink_to(data / split / "masks" / name)
    if labeled and (data / split / "classes.yaml").exists():
        (into / "classes.yaml").symlink_to(data / split / "classes.yaml")
    return into


# -- one measurement, in its own process ----------------------------------------------------------


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["job"] == "adapt":
        from cegate_cli.options.adapt import AdaptOptions
        from cegate_cli.options.train import TrainConfig
        from cegate_cli.pipelines.adapt import adapt
        from cegate_cli.toolbox.config import ToolboxConfig

        started = time.perf_counter()
        result = adapt(
            AdaptOptions(
                source=Path(spec["source"]),
                out=Path(spec["run"]),
                backbone=spec["backbone"],
                bands="red,green,blue,nir",
                kinds=tuple(spec["kinds"].split(",")),
                toolbox=ToolboxConfig(kinds=tuple(spec["kinds"].split(","))),
                train=TrainConfig(
                    steps=spec["steps"], crop=spec["crop"], batch_size=spec["batch"], selection=spec["selection"], val_every=0, save_every=10**6, seed=0
                ),
                overwrite=True,
            )
        )
        timing = result.manifest.timing
        return {
            "seconds": time.perf_counter() - started,
            "train_seconds": timing.train_seconds,
            "fisher_seconds": timing.fisher_seconds,
            "steps": spec["steps"],
            "trainable": result.manifest.parameters.modules_trained + result.manifest.parameters.decoder if result.manifest.parameters else None,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
    from cegate_cli.pipelines.inference import MapOptions, load_for_inference, predict_run
    from cegate_cli.predict.vector_options import VectorOptions

    if spec["job"] == "forward":
        options = MapOptions()
        models = [load_for_inference(Path(run), options).model.eval() for run in spec["runs"]]
        images = torch.randn(options.batch_size, spec["bands"], options.tile, options.tile, generator=torch.Generator().manual_seed(0))
        times: list[list[float]] = [[] for _ in models]
        with torch.no_grad():
            for model in models:
                model(images)  # warm-up: thread pools, lazy set-up
            for _ in range(spec["reps"]):
                for i, model in enumerate(models):
                    started = time.perf_counter()
                    model(images)
                    times[i].append(time.perf_counter() - started)
        return {"medians": [sorted(t)[len(t) // 2] for t in times], "times": times, "tiles": options.batch_size, "tile": options.tile}

    scenes = sorted(Path(spec["scenes"]).iterdir())
    started = time.perf_counter()
    predict_run(Path(spec["run"]), scenes, Path(spec["out"]), options=MapOptions(), vectors=VectorOptions(fmt=None), overwrite=True)
    seconds = time.perf_counter() - started
    import rasterio

    pixels = 0
    for scene in scenes:
        with rasterio.open(scene) as src:
            pixels += src.width * src.height
    return {"seconds": seconds, "pixels": pixels, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def measure(spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({spec['job']} {spec.get('backbone', spec.get('run'))}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


# -- the report ----------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def render(rows: list[dict], prompt: list[dict], command: str, info: str) -> str:
    lines = [
        "<!-- bench_families:begin -->",
        f"Made by `{command}` ({info}).",
        "",
        "| family | weights | train step (s) | Fisher scoring (s) | adapt peak memory | predict (Mpx/s) | predict peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        a, p = r["adapt"], r["predict"]
        lines.append(
            f"| {r['family']} | {'random, real size' if r['family'] in RANDOM else 'embedded'} | "
            f"{a['train_seconds'] / a['steps']:.2f} | {a['fisher_seconds']:.1f} | {mib(a['peak_rss'])} | "
            f"{p['pixels'] / p['seconds'] / 1e6:.3f} | {mib(p['peak_rss'])} |"
        )
    if prompt:
        lines += [
            "",
            f"Prompt tuning's predict cost (`--selection all`, every module active; {TOOLBOX} vs {WITH_PROMPT}, 10 tokens; "
            f"median forward seconds of a batch of {prompt[0]['tiles']} tiles of {prompt[0]['tile']} px, alternating):",
            "",
            "| family | forward s without prompts | with prompts | ratio |",
            "| --- | --- | --- | --- |",
        ]
        for r in prompt:
            lines.append(f"| {r['family']} | {r['without']:.2f} | {r['with']:.2f} | {r['with'] / r['without']:.2f}x |")
    lines.append("<!-- bench_families:end -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument(
        "--prompt-families",
        nargs="*",
        choices=FAMILIES,
        default=["tiny", "galileo-nano", "prithvi-eo-2-tiny"],
        help="families whose predict cost is also measured with and without the prompt kind",
    )
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "naip")
    parser.add_argument("--train-tiles", type=int, default=8)
    parser.add_argument("--scenes", type=int, default=4, help="NAIP test tiles predicted")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5, help="timed forward passes of each prompt run, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose bench_families block is replaced (or printed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    command = "python benchmarks/bench_families.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_families_"))
    source = tile_folder(args.data.resolve(), "train", args.train_tiles, work / "source", labeled=True)
    scenes = tile_folder(args.data.resolve(), "test", args.scenes, work / "scenes", labeled=False) / "images"
    load_start, started = load_average(), time.perf_counter()
    common = {"threads": args.threads, "steps": args.steps, "crop": args.crop, "batch": args.batch_size}
    rows, prompt = [], []
    for family in args.families:
        backbone = random_backbone(family, work / "backbones" / family)
        kinds_list = [TOOLBOX, WITH_PROMPT] if family in args.prompt_families else []
        run = work / "runs" / family
        adapt_result = measure(
            {**common, "job": "adapt", "source": str(source), "run": str(run), "backbone": backbone, "kinds": TOOLBOX, "selection": "fisher-cost"}
        )
        predicted = measure({**common, "job": "predict", "run": str(run), "scenes": str(scenes), "out": str(work / "maps" / family)})
        rows.append({"family": family, "adapt": adapt_result, "predict": predicted})
        print(
            f"{family}: {adapt_result['train_seconds'] / args.steps:.2f} s/step, {mib(adapt_result['peak_rss'])}; "
            f"predict {predicted['seconds']:.1f} s, {mib(predicted['peak_rss'])}",
            file=sys.stderr,
            flush=True,
        )
        runs_all = []
        for kinds in kinds_list:
            runs_all.append(work / "runs" / f"{family}-all-{len(kinds)}")
            measure(
                {
                    **common,
                    "job": "adapt",
                    "source": str(source),
                    "run": str(runs_all[-1]),
                    "backbone": backbone,
                    "kinds": kinds,
                    "selection": "all",
                    "steps": 2,
                }
            )
        if kinds_list:
            timed = measure({**common, "job": "forward", "runs": [str(r) for r in runs_all], "reps": args.reps, "bands": 4})
            without, with_prompt = timed["medians"]
            prompt.append({"family": family, "without": without, "with": with_prompt, "times": timed["times"], "tiles": timed["tiles"], "tile": timed["tile"]})
            print(f"{family} prompt: {with_prompt / without:.2f}x", file=sys.stderr, flush=True)
    info = (
        f"{dt.date.today().isoformat()}, {cpu_name()}, {platform.system()}, {args.threads} torch threads, "
        f"{args.train_tiles} NAIP train tiles, {args.scenes} test tiles of 256 x 256, load {load_start}-{load_average()}, "
        f"{(time.perf_counter() - started) / 60:.0f} min"
    )
    block = render(rows, prompt, command, info)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "info": info, "rows": rows, "prompt": prompt}, indent=1), encoding="utf-8")
    if args.out and args.out.exists() and "<!-- bench_families:begin -->" in args.out.read_text(encoding="utf-8"):
        text = args.out.read_text(encoding="utf-8")
        head, rest = text.split("<!-- bench_families:begin -->", 1)
        args.out.write_text(head + block + rest.split("<!-- bench_families:end -->\n", 1)[1], encoding="utf-8")
    elif args.out:
        args.out.write_text(block, encoding="utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
