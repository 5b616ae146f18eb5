"""Step time of `adapt` in one process against torchrun with N processes, same global batch.

    python benchmarks/bench_distributed.py                               # 1 vs 2 CPU processes
    python benchmarks/bench_distributed.py --processes 1 2 --global-batch 8 --crop 128 --steps 12

Each configuration is a fresh run of the library `adapt` on the generated demo data with the
embedded `tiny` backbone: one process with `--batch-size G` (plain `python`, no process group),
then `torchrun --standalone --nproc-per-node N` with `--batch-size G / N` each. Every rank clocks
its training steps (wall and CPU time); every rank waits for the others at each step's gradient
all-reduce, so rank 0's wall time per step is the job's, and the CPU seconds of all ranks add up
to what the step cost the machine (less sensitive to other work on it). The first `--warmup`
steps are left out. Fisher selection happens once before the loop and validation is off, so the
mean is forward, backward, all-reduce and AdamW only. Threads per process are set so the processes together use the cores
given (`--cores`), which is what a fair CPU comparison needs (`--threads` fixes it instead: on
a machine shared with other work, two spinning threads per process can cost more than they
bring). Results are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One process of a run (rank 0 of 1 without torchrun)."""
    from cegate_cli.infra.distributed import gather_objects, world
    from cegate_cli.options.train import TrainConfig
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt
    from cegate_cli.train.supervised import SupervisedTrainer

    # Every rank clocks its own steps (the reporter is rank 0's only): wall and CPU time after
    # each optimizer step, around the trainer's own step function.
    wall: list[float] = []
    cpu: list[float] = []
    train_step = SupervisedTrainer._train_step

    def clocked(self: SupervisedTrainer, step: int) -> float:
        value = train_step(self, step)
        wall.append(time.perf_counter())
        cpu.append(time.process_time())
        return value

    SupervisedTrainer._train_step = clocked  # type: ignore[method-assign]
    current = world()
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.global_batch // current.size,
        crop=args.crop,
        seed=0,
        device="cpu",
        val_fraction=0.0,
        reselect_every=0,
        fisher_samples=4,
        select="0.25",
        save_every=args.steps,
        warmup_steps=1,
    )
    started = time.perf_counter()
    adapt(AdaptOptions(source=Path(args.data), out=Path(args.out), backbone="tiny", train=config))
    timed = len(wall) - 1 - args.warmup
    cpu_per_step = gather_objects((cpu[-1] - cpu[args.warmup]) / timed)
    if current.is_main:
        result = {
            "processes": current.size,
            "batch_per_process": config.batch_size,
            "step_seconds": (wall[-1] - wall[args.warmup]) / timed,
            "cpu_seconds": sum(cpu_per_step),
            "wall_seconds": time.perf_counter() - started,
        }
        Path(args.result).write_text(json.dumps(result))


def driver(args: argparse.Namespace) -> None:
    from cegate_cli.data.synthetic import make_demo_dataset

    with tempfile.TemporaryDirectory(prefix="cegate-bench-ddp-") as tmp:
        root = Path(tmp)
        data = make_demo_dataset(root / "demo", n_source=6, n_target=1, size=256, seed=0)
        rows = []
        for index, processes in enumerate(args.processes):
            if args.global_batch % processes:
                raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {processes} processes")
            threads = args.threads or max(1, args.cores // processes)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            common = [
                __file__,
                "--role",
                "worker",
                "--data",
                str(data.source_dir),
                "--out",
                str(root / f"run{index}"),
                "--result",
                str(root / f"result{index}.json"),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--global-batch",
                str(args.global_batch),
                "--crop",
                str(args.crop),
            ]
            if processes == 1:
                command = [sys.executable, *common]
            else:
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), *common]
            subprocess.run(command, env=env, check=True, capture_output=not args.verbose)
            result = json.loads((root / f"result{index}.json").read_text())
            result["threads_per_process"] = threads
            rows.append(result)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"tiny backbone, crop {args.crop}, global batch {args.global_batch}, {args.steps} steps ({args.warmup} warm-up), "
        f"{args.cores} cores, load average {load:.1f}"
    )
    print("| processes | batch per process | threads per process | s / step (wall) | CPU s / step (all processes) | crops / s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['processes']} | {row['batch_per_process']} | {row['threads_per_process']} | "
            f"{row['step_seconds']:.3f} | {row['cpu_seconds']:.3f} | {args.global_batch / row['step_seconds']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("driver", "worker"), default="driver")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=0, help="Threads per process (default: cores / processes).")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--result")
    args = parser.parse_args()
    worker(args) if args.role == "worker" else driver(args)


if __name__ == "__main__":
    main()
