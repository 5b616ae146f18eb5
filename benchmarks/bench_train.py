"""Benchmark training efficiency: gated training against full fine-tuning, Fisher's share, LoRA merging.

    python benchmarks/bench_train.py                      # tiny + ViT-S, crop 224, batch 8, 2 threads
    python benchmarks/bench_train.py --models tiny --steps 5 --out /tmp/bench.md

For each backbone (the embedded `tiny` and a ViT-Small-sized timm ViT with random weights: the
weights do not change the cost) and each head (`unet`, what `adapt` uses, whose full-resolution
stages cost the same in every configuration; `linear`, which leaves the backbone's own cost
visible) the same crop and batch are trained under four configurations:

- full:      every backbone weight and the head trainable, no toolbox module active;
- all:       every toolbox module active (no selection), backbone frozen;
- fisher:    the top 25 % of modules by empirical Fisher on real crops (`empirical_fisher`,
             `select_top`, `apply_selection`), blocks below the lowest one under no_grad;
- top-half:  every module of the upper half of the blocks, to show what no_grad below saves.

Every configuration runs in a fresh subprocess: step time is the mean of `--steps` timed steps
(forward, backward, AdamW) after `--warmup` untimed ones, on one fixed batch of real demo crops;
peak memory is the process's peak RSS while training minus its RSS just before (the peak is reset
through /proc/self/clear_refs), or `torch.cuda.max_memory_allocated` over the start on CUDA.
CPU seconds per step are shown next to wall seconds because they suffer less when other work
shares the machine; the load average says how busy it was.

Fisher's share of a whole adapt comes from a real `cegate_cli.pipelines.adapt.adapt` run of the tiny
backbone on the demo data (run.json: fisher_seconds / total_seconds). Prediction throughput is
the model's forward pass on tiles with the Fisher selection active, LoRA unmerged vs merged.
The markdown report is generated from the measurements; nothing in it is typed in by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from report_block import cpu_name

CONFIGS = ("full", "all", "fisher", "fisher-cost", "fisher-block", "top-half", "none")
FISHER_CONFIGS = ("fisher", "fisher-cost", "fisher-block")
MODELS = ("tiny", "vit-small")
REPO = Path(__file__).resolve().parent.parent


# -- what one worker is asked to do -------------------------------------------------------------


@dataclass
class Job:
    """The arguments of one subprocess, passed as JSON on its command line."""

    task: str  # select | train | predict | adapt
    model: str
    data: str  # demo dataset root
    crop: int
    batch_size: int
    threads: int
    device: str
    config: str = ""
    decoder: str = "unet"
    selected: list[list] = field(default_factory=list)  # [[kind, layer], ...]
    select: str = "0.25"
    fisher_samples: int = 16
    steps: int = 3
    warmup: int = 1
    predict_batch: int = 8
    predict_reps: int = 5
    adapt_steps: int = 300
    adapt_crop: int = 64
    adapt_batch: int = 8
    workdir: str = ""


def run_job(job: Job) -> dict:
    """Run `job` in a fresh Python process and return the JSON it prints last."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(job))]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"worker {job.task}/{job.model}/{job.config} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- inside a worker ----------------------------------------------------------------------------


def _pretrained(model: str):
    from cegate_cli.backbone.tiny import build_tiny_vit
    from cegate_cli.backbone.vit import PretrainedViT

    if model == "tiny":
        return build_tiny_vit()
    import timm
    import torch

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True)
    return PretrainedViT(vit, ("red", "green", "blue"), "vit_small_patch16_224")


def _build(job: Job):
    from cegate_cli.model.segmentation import build_model
    from cegate_cli.toolbox import ToolboxConfig

    return build_model(_pretrained(job.model), ("blue", "green", "red", "nir"), 4, ToolboxConfig(), decoder=job.decoder, seed=0)


def _crops(job: Job, count: int, seed: int):
    """`count` real labeled crops from the demo source folder, normalised like `adapt` does."""
    from cegate_cli.data.bands import bands_for_images
    from cegate_cli.data.crops import CropSampler
    from cegate_cli.data.folder import discover_labeled
    from cegate_cli.data.stats import compute_band_stats

    folder = discover_labeled(Path(job.data) / "source")
    images = [pair.image for pair in folder.pairs]
    choice, indexes = bands_for_images(None, images)
    stats = compute_band_stats(images, indexes, choice.names)
    sampler = CropSampler(folder.pairs, indexes, stats, job.crop, folder.class_table.ignore_index, augment=False)
    try:
        return sampler.sample(0, count, seed)
    finally:
        sampler.close()


def _backbone_parameters(built) -> list:
    """The backbone's own weights: everything in it that no toolbox module owns."""
    own = {id(p) for module in built.toolbox for p in module.own_parameters()}
    return [p for p in built.model.backbone.parameters() if id(p) not in own]


def _configure(built, job: Job) -> None:
    """Make exactly what `job.config` trains require a gradient, and set the no_grad cut-off."""
    from cegate_cli.train.gating import apply_selection

    toolbox = built.toolbox
    if job.config == "full":
        # The library has no switch for full fine-tuning (attach_toolbox freezes the backbone), so
        # it is done here: no module active, every backbone weight trainable, autograd everywhere.
        toolbox.set_active([])
        for p in _backbone_parameters(built):
            p.requires_grad_(True)
        toolbox.backbone.grad_from_layer = 0
    elif job.config == "all":
        apply_selection(toolbox, toolbox.keys())
    elif job.config == "top-half":
        half = toolbox.backbone.depth // 2
        apply_selection(toolbox, [key for key in toolbox.keys() if key[1] >= half])
    elif job.config in FISHER_CONFIGS:
        apply_selection(toolbox, [(kind, int(layer)) for kind, layer in job.selected])
    elif job.config == "none":
        apply_selection(toolbox, [])
    else:
        raise ValueError(f"unknown configuration {job.config!r}")


def _memory_now() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_select(job: Job) -> dict:
    from cegate_cli.toolbox.fisher import empirical_fisher, modules_to_score, normalize_within_kind, parse_select, select_by_fisher_rule
    from cegate_cli.train.losses import masked_cross_entropy

    built = _build(job)
    batch = _crops(job, job.fisher_samples, seed=104_729)
    keys = built.toolbox.keys()
    started = time.perf_counter()
    scores = empirical_fisher(
        built.model, built.toolbox, zip(batch.images, batch.masks), lambda logits, target: masked_cross_entropy(logits, target, 255), keys
    )
    count = parse_select(job.select, len(keys))
    depth = built.toolbox.backbone.depth
    by_rule = {}
    for rule in FISHER_CONFIGS:  # each rule ranks what `adapt` would score for it: fisher-cost its own blocks, normalised among them
        pool = set(modules_to_score(rule, keys, count, depth))
        by_rule[rule] = select_by_fisher_rule(rule, normalize_within_kind({k: v for k, v in scores.raw.items() if k in pool}), count, depth)
    seconds = time.perf_counter() - started
    return {
        "selected": [list(key) for key in by_rule["fisher"]],
        "by_rule": {rule: [list(key) for key in keys] for rule, keys in by_rule.items()},
        "seconds": seconds,
        "samples": scores.samples,
        "candidates": len(keys),
    }


def worker_train(job: Job) -> dict:
    import torch

    from cegate_cli.train.losses import masked_cross_entropy
    from cegate_cli.train.optimizer import build_adamw

    device = torch.device(job.device)
    built = _build(job)
    _configure(built, job)
    model = built.model.to(device)
    batch = _crops(job, job.batch_size, seed=0).to(device)
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = build_adamw(named, 1e-4, 0.01)
    backbone_count = sum(p.numel() for p in _backbone_parameters(built))
    trainable = sum(p.numel() for p in named.values())
    modules = sum(built.toolbox.parameter_count(key) for key in built.toolbox.active_keys)
    model.train()

    def step() -> None:
        logits = model(batch.images)
        loss = masked_cross_entropy(logits, batch.masks, 255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        model(batch.images)  # lazy runtime set-up (thread pools, kernels) is not training memory
    gc.collect()
    baseline = _memory_now()
    exact_peak = _reset_peak()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    for _ in range(job.warmup):
        step()
    walls, cpus = [], []
    for _ in range(job.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak()
    return {
        "step_seconds": sum(walls) / len(walls),
        "step_min": min(walls),
        "step_max": max(walls),
        "cpu_seconds": sum(cpus) / len(cpus),
        "peak_bytes": peak - baseline,
        "process_peak_bytes": peak,
        "peak_exact": exact_peak or device.type == "cuda",
        "trainable": trainable,
        "modules": modules,
        "backbone": backbone_count,
        "lowest_grad_layer": built.model.backbone.grad_from_layer,
        "active": len(built.toolbox.active_keys),
    }


def worker_predict(job: Job) -> dict:
    """Forward throughput on tiles with the selection active: LoRA unmerged, then merged."""
    import torch

    from cegate_cli.toolbox import LoRAQKV
    from cegate_cli.train.gating import apply_selection

    device = torch.device(job.device)
    built = _build(job)
    model = built.model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking LoRA values, so merging really changes the weights
        for module in built.toolbox:
            if isinstance(module, LoRAQKV):
                for p in module.own_parameters():
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    tiles = torch.randn(job.predict_batch, 4, job.crop, job.crop, generator=generator).to(device)
    rows = {}
    for label, keys in (("fisher", [(k, int(l)) for k, l in job.selected]), ("all", built.toolbox.keys())):
        apply_selection(built.toolbox, keys)
        lora = sum(1 for key in keys if key[0] == "lora")
        walls: dict[bool, list[float]] = {False: [], True: []}
        outputs = {}
        with torch.inference_mode():
            model(tiles)  # warm-up
            # Unmerged and merged passes alternate, so a change in machine load hits both alike.
            for _ in range(job.predict_reps):
                for merged in (False, True):
                    if merged:
                        built.toolbox.merge_lora()
                    started = time.perf_counter()
                    outputs[merged] = model(tiles)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    walls[merged].append(time.perf_counter() - started)
                    built.toolbox.unmerge_lora()
        times = {merged: sorted(values)[len(values) // 2] for merged, values in walls.items()}  # medians
        rows[label] = {
            "lora_modules": lora,
            "active": len(keys),
            "unmerged_seconds": times[False],
            "merged_seconds": times[True],
            "max_abs_difference": float((outputs[True] - outputs[False]).abs().max()),
        }
    return rows


def worker_adapt(job: Job) -> dict:
    from cegate_cli.options.train import TrainConfig
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt

    train = TrainConfig(
        steps=job.adapt_steps,
        crop=job.adapt_crop,
        batch_size=job.adapt_batch,
        device=job.device,
        val_every=max(1, job.adapt_steps // 2),
        save_every=job.adapt_steps,
        warmup_steps=min(25, job.adapt_steps // 10),
    )
    out = Path(job.workdir) / "adapt-run"
    result = adapt(AdaptOptions(source=Path(job.data) / "source", out=out, backbone="tiny", train=train, overwrite=True))
    manifest = json.loads((result.run_dir / "run.json").read_text())
    return {"timing": manifest["timing"], "best_val_miou": manifest["metrics"]["best_val_miou"], "select_count": result.manifest.select_count}


WORKERS = {"select": worker_select, "train": worker_train, "predict": worker_predict, "adapt": worker_adapt}


def worker_main(spec: str) -> None:
    import torch

    job = Job(**json.loads(spec))
    torch.set_num_threads(job.threads)
    sys.path.insert(0, str(REPO))
    result = WORKERS[job.task](job)
    print(json.dumps(result))


# -- the report ---------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def _process_peak(r: dict, full: dict) -> str:
    """The process peak and its ratio to full fine-tuning's; "–" for results recorded without it."""
    if "process_peak_bytes" not in r or "process_peak_bytes" not in full:
        return "– | –"
    return f"{mib(r['process_peak_bytes'])} | {r['process_peak_bytes'] / max(1, full['process_peak_bytes']):.2f}x"


def render(results: dict, args: argparse.Namespace, command: str, info: dict, loads: tuple[str, str], seconds: float) -> str:
    lines = [
        "# Training efficiency: gated training vs full fine-tuning",
        "",
        "Generated by `benchmarks/bench_train.py`; every figure below is measured by that run.",
        "",
        f"- command: `{command}`",
        f"- date: {results['date']}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {args.threads} torch threads, device {args.device}; "
        f"Python {info['python']}, torch {info['torch']}, OMP_WAIT_POLICY {info['omp_wait_policy']}",
        f"- load average (1 / 5 / 15 min) before: {loads[0]}; after: {loads[1]} "
        "(the machine may be shared: CPU seconds per step are less sensitive to that than wall seconds)",
        f"- batch {args.batch_size}, crop {args.crop} px, {args.warmup} warm-up + {args.steps} timed steps per configuration "
        f"(forward + backward + AdamW), each configuration in a fresh process; whole benchmark {seconds:.0f} s",
        "",
        "Configurations: **full** = every backbone weight + head trainable, no module; **all** = every toolbox "
        "module active, backbone frozen; **fisher** = top "
        f"{args.select} of modules by empirical Fisher on {args.fisher_samples} real crops; **fisher-cost** = the same count, "
        "Fisher's top among the upper half of the blocks (fisher.select_by_fisher_rule); **fisher-block** = the same count, "
        "scores ranked within each block; **none** = frozen backbone, head only; **top-half** = every "
        "module in the upper half of the blocks (the lower half runs under no_grad). Trainable share = trainable "
        "parameters (modules + head, or backbone + head for full) / backbone parameters. Peak train memory = peak RSS "
        "while training minus RSS before the first step (CUDA: peak allocated minus allocated): what training adds. "
        "Process peak = the whole process's peak RSS while training (CUDA: max allocated): what the machine sees.",
        "",
    ]
    for res in results["runs"]:
        full = res["train"]["full"]
        head = full["trainable"] - full["backbone"]
        lines += [
            f"## {res['model']} backbone, {res['decoder']} head: {res['backbone_parameters'] / 1e6:.2f} M backbone parameters, "
            f"{head / 1e6:.3f} M head parameters, {res['candidates']} candidate modules",
            "",
            "| configuration | active modules | lowest layer with autograd | trainable params | share of backbone | step (s, wall) | vs full | CPU s / step | vs full | peak train memory | vs full | process peak | vs full |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in CONFIGS:
            if name not in res["train"]:
                continue
            r = res["train"][name]
            lines.append(
                f"| {name} | {r['active']} | {r['lowest_grad_layer']} | {r['trainable']:,} | {r['trainable'] / r['backbone']:.2%} | "
                f"{r['step_seconds']:.3f} ({r['step_min']:.3f}-{r['step_max']:.3f}) | {r['step_seconds'] / full['step_seconds']:.2f}x | "
                f"{r['cpu_seconds']:.3f} | {r['cpu_seconds'] / full['cpu_seconds']:.2f}x | {mib(r['peak_bytes'])}{'' if r['peak_exact'] else ' (upper bound)'} | "
                f"{r['peak_bytes'] / max(1, full['peak_bytes']):.2f}x | {_process_peak(r, full)} |"
            )
        sel = res["select"]
        chosen = ", ".join(f"{k}@{l}" for k, l in sel["selected"])
        fisher_step = res["train"]["fisher"]["step_seconds"]
        projected = sel["seconds"] / (sel["seconds"] + args.project_steps * fisher_step)
        lines += [
            "",
            f"Fisher selection ({sel['samples']} crops of {args.crop} px): {chosen}; scoring took {sel['seconds']:.2f} s. "
            f"Projected Fisher share of a {args.project_steps}-step adapt at this crop and batch (one selection, "
            f"measured scoring time / (scoring + {args.project_steps} x the fisher step time)): {projected:.1%}.",
            "",
            f"Prediction forward on {args.predict_batch} x 4 x {args.crop} x {args.crop} tiles (median of {args.predict_reps} passes each, "
            "unmerged and merged alternating; LoRA filled with random values so merging changes the weights):",
            "",
            "| active selection | LoRA modules | unmerged (s) | merged (s) | merged speed-up | tiles/s unmerged | tiles/s merged | max abs output difference |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, p in res["predict"].items():
            lines.append(
                f"| {label} ({p['active']} modules) | {p['lora_modules']} | {p['unmerged_seconds']:.3f} | {p['merged_seconds']:.3f} | "
                f"{p['unmerged_seconds'] / p['merged_seconds']:.2f}x | {args.predict_batch / p['unmerged_seconds']:.1f} | "
                f"{args.predict_batch / p['merged_seconds']:.1f} | {p['max_abs_difference']:.1e} |"
            )
        lines.append("")
    if results.get("adapt"):
        a = results["adapt"]
        t = a["timing"]
        lines += [
            "## Fisher scoring share of a whole adapt",
            "",
            f"`cegate_cli.pipelines.adapt.adapt` on the demo source folder, backbone tiny, {args.adapt_steps} steps, crop {args.adapt_crop}, "
            f"batch {args.adapt_batch}, one selection of {a['select_count']} modules from 16 Fisher crops (run.json timing):",
            "",
            "| fisher_seconds | train_seconds | total_seconds | Fisher share of total | best val mIoU |",
            "|---:|---:|---:|---:|---:|",
            f"| {t['fisher_seconds']:.2f} | {t['train_seconds']:.2f} | {t['total_seconds']:.2f} | "
            f"{t['fisher_seconds'] / t['total_seconds']:.1%} | {a['best_val_miou']:.3f} |",
            "",
        ]
    return "\n".join(lines)


def measure(model: str, decoder: str, args: argparse.Namespace, common: dict) -> dict:
    """Selection, the four training configurations and prediction for one backbone and head."""
    name = f"{model}/{decoder}"
    print(f"[{name}] Fisher selection", file=sys.stderr, flush=True)
    select = run_job(Job("select", model, decoder=decoder, select=args.select, fisher_samples=args.fisher_samples, **common))
    res: dict = {"model": model, "decoder": decoder, "select": select, "candidates": select["candidates"], "train": {}}
    for config in args.configs:
        print(f"[{name}] training: {config}", file=sys.stderr, flush=True)
        selected = select.get("by_rule", {}).get(config, select["selected"])
        res["train"][config] = run_job(Job("train", model, decoder=decoder, config=config, selected=selected, steps=args.steps, warmup=args.warmup, **common))
        r = res["train"][config]
        print(f"    {r['step_seconds']:.3f} s/step, {mib(r['peak_bytes'])}, {r['trainable']:,} trainable", file=sys.stderr)
    res["backbone_parameters"] = res["train"]["full"]["backbone"]
    print(f"[{name}] prediction, LoRA merged vs unmerged", file=sys.stderr, flush=True)
    res["predict"] = run_job(
        Job("predict", model, decoder=decoder, selected=select["selected"], predict_batch=args.predict_batch, predict_reps=args.predict_reps, **common)
    )
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--decoders",
        nargs="+",
        choices=("unet", "linear"),
        default=["unet", "linear"],
        help="segmentation heads: unet is what adapt uses; linear shows the backbone's own cost",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS,
        default=list(CONFIGS),
        help="training configurations to time (full is always included: every ratio is against it)",
    )
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--select", default="0.25", help="Fisher selection: a fraction or a count")
    parser.add_argument("--fisher-samples", type=int, default=16)
    parser.add_argument("--predict-batch", type=int, default=8)
    parser.add_argument("--predict-reps", type=int, default=5, help="timed passes each, unmerged and merged alternating")
    parser.add_argument("--adapt-steps", type=int, default=300, help="0 skips the whole-adapt measurement")
    parser.add_argument("--adapt-crop", type=int, default=64)
    parser.add_argument("--adapt-batch", type=int, default=8)
    parser.add_argument("--project-steps", type=int, default=500, help="adapt length for the projected Fisher share")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", type=Path, help="demo dataset root (made in a temporary folder when absent)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks-efficiency.md")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.configs = ["full"] + [c for c in CONFIGS if c in args.configs and c != "full"]
    if args.worker:
        worker_main(args.worker)
        return 0

    sys.path.insert(0, str(REPO))
    from cegate_cli.data.synthetic import make_demo_dataset
    from cegate_cli.infra.atomic import write_json_atomic, write_text_atomic

    started = time.perf_counter()
    load_before = load_average()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench_train-") as scratch:
        data = args.data or Path(scratch) / "demo"
        if not (data / "source").is_dir():
            make_demo_dataset(data)
        common = dict(data=str(data), crop=args.crop, batch_size=args.batch_size, threads=args.threads, device=args.device)
        results: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "runs": []}
        for model in args.models:
            for decoder in args.decoders:
                results["runs"].append(measure(model, decoder, args, common))
        if args.adapt_steps > 0:
            print(f"[tiny] whole adapt, {args.adapt_steps} steps", file=sys.stderr, flush=True)
            results["adapt"] = run_job(
                Job("adapt", "tiny", adapt_steps=args.adapt_steps, adapt_crop=args.adapt_crop, adapt_batch=args.adapt_batch, workdir=scratch, **common)
            )
    seconds = time.perf_counter() - started
    results["machine"] = info
    results["load_average"] = {"before": load_before, "after": load_average()}
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(results, args, command.strip(), info, (load_before, results["load_average"]["after"]), seconds)
    write_text_atomic(args.out, text)
    if args.json:
        write_json_atomic(args.json, results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
