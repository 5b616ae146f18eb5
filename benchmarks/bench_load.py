"""How `cegate demo` copes with a machine that also runs other things, before and after the
wait-policy and thread changes, side by side in one run.

    python benchmarks/bench_load.py                     # demo --steps 20, 3 repeats; writes the doc and JSON
    python benchmarks/bench_load.py --steps 2 --repeats 1 --settle 0 \\
        --doc /tmp/load.md --json /tmp/load.json        # a smoke run of the script itself

Four conditions, each a fresh `cegate demo DIR --steps N --json` process, timed from outside:

- load: `idle` (nothing started by the benchmark) or `busy` (one `while True: pass` process
  pinned to the last core this process may use, as a laptop's other program);
- cegate: `before` reproduces cegate without this change: torch is imported before the CLI, so
  its OpenMP runtime starts with the default wait policy (the CLI's OMP_WAIT_POLICY comes too
  late), and `--threads` gets every usable core, torch's own default; `now` is `cegate demo` as
  shipped: OMP_WAIT_POLICY=PASSIVE and threads from the free cores.

Per repeat the order is idle-before, idle-now, busy-before, busy-now; before an idle block the
script waits `--settle` seconds for the 1-minute load average to fall after a busy block (it
decays with a one-minute time constant, and `now` reads it to choose its threads). The 1-minute
load when each run starts, the threads `now` chose (its --verbose line) and the demo's own
per-part seconds are recorded beside the wall time. Runs of other people's jobs on the machine
show up in the load column: compare conditions within one run of this script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_LAUNCHER = (
    "import sys, torch\n"  # torch first: libgomp is loaded (and reads OMP_WAIT_POLICY) before cegate's CLI can set it
    "from cegate_cli.cli import main\n"
    "main(sys.argv[1:])\n"
)
CONDITIONS = (("idle", "before"), ("idle", "now"), ("busy", "before"), ("busy", "now"))


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def load_1min() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def start_busy_loop(core: int) -> subprocess.Popen:
    """One process spinning on `core`: another program holding one core."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {core})
    except (AttributeError, OSError):
        pass
    time.sleep(1.0)
    return busy


def environment() -> dict[str, str]:
    """This environment without the knobs under test, with this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "CEGATE_PROGRESS_SECONDS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def run_demo(variant: str, folder: Path, steps: int, cores: int) -> dict:
    """One demo in a fresh process; returns wall seconds, the demo's own seconds, threads, load."""
    args = ["demo", str(folder), "--steps", str(steps), "--device", "cpu", "--json", "--verbose"]
    if variant == "before":
        command = [sys.executable, "-c", BEFORE_LAUNCHER, *args, "--threads", str(cores)]
    else:
        command = [sys.executable, "-m", "cegate_cli", *args]
    shutil.rmtree(folder, ignore_errors=True)
    load = load_1min()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{variant}: demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    threads_line = next((line for line in done.stderr.splitlines() if line.startswith("threads: ")), "")
    report = json.loads(done.stdout)
    return {
        "wall_seconds": round(wall, 2),
        "demo_seconds": report["seconds"],
        "target_miou": report["evaluation"]["miou"],
        "threads": threads_line.removeprefix("threads: "),
        "load_1min_at_start": round(load, 2),
        "load_1min_at_end": round(load_1min(), 2),
    }


def measure(steps: int, repeats: int, settle: float, scratch: Path) -> list[dict]:
    cores = usable_cores()
    rows: list[dict] = []
    for repeat in range(repeats):
        previous_load = None
        for load, variant in CONDITIONS:
            if load == "idle" and previous_load == "busy" and settle > 0:
                time.sleep(settle)
            busy = start_busy_loop(cores[-1]) if load == "busy" else None
            try:
                result = run_demo(variant, scratch / f"{load}-{variant}", steps, len(cores))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            policy = "libgomp default (torch imported first)" if variant == "before" else "PASSIVE"
            rows.append({"repeat": repeat, "load": load, "cegate": variant, "wait_policy": policy, **result})
            print(
                f"repeat {repeat} {load:4} {variant:6} {result['wall_seconds']:7.1f} s  load {result['load_1min_at_start']:.2f}  "
                f"{result['threads'] or '(threads: ' + str(len(cores)) + ', --threads)'}",
                file=sys.stderr,
                flush=True,
            )
            previous_load = load
    return rows


def machine() -> dict:
    import torch

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "usable_cores": len(usable_cores()),
        "cpu": model or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def table(rows: list[dict]) -> list[str]:
    """Median wall time per condition, with the loads and threads seen."""
    lines = [
        "| load | cegate | wait policy | threads | wall s (median) | runs | demo adapt s | target mIoU | 1-min load at start |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for load, variant in CONDITIONS:
        runs = [r for r in rows if r["load"] == load and r["cegate"] == variant]
        if not runs:
            continue
        wall = statistics.median(r["wall_seconds"] for r in runs)
        adapt = statistics.median(r["demo_seconds"]["adapt"] for r in runs)
        miou = statistics.median(r["target_miou"] for r in runs)
        loads = ", ".join(f"{r['load_1min_at_start']:.2f}" for r in runs)
        threads = "; ".join(sorted({r["threads"].split(" (")[0] if r["threads"] else "all cores (--threads)" for r in runs}))
        lines.append(f"| {load} | {variant} | {runs[0]['wait_policy']} | {threads} | {wall:.1f} | {len(runs)} | {adapt:.1f} | {miou:.3f} | {loads} |")
    return lines


def write_doc(path: Path, rows: list[dict], info: dict, steps: int) -> None:
    def median(load: str, variant: str) -> float:
        return statistics.median(r["wall_seconds"] for r in rows if r["load"] == load and r["cegate"] == variant)

    slowdown = [f"- {variant}: busy / idle = {median('busy', variant) / median('idle', variant):.2f}x" for variant in ("before", "now")]
    text = "\n".join(
        [
            "# The demo on a machine that also runs other things",
            "",
            f"Measured by `benchmarks/bench_load.py`: `cegate demo --steps {steps}` in a fresh process per run, "
            "idle and with one busy loop pinned to one core (`busy`), as cegate was before "
            "(torch's default OpenMP wait policy, one thread per usable core) and as it is `now` "
            "(OMP_WAIT_POLICY=PASSIVE, threads from the cores free when it starts).",
            "",
            *table(rows),
            "",
            "Slowdown under one busy loop (median wall time):",
            *slowdown,
            "",
            f"Machine: {info['usable_cores']} usable cores ({info['cpu']}), {info['platform']}, Python {info['python']}, "
            f"torch {info['torch']}. Measured {info['date']}.",
            "The load column is the 1-minute load average when each run started: anything above 0 in an `idle` "
            "row is other people's work on the machine, which this benchmark does not control.",
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="demo training steps (the issue's figure: 20)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait before an idle block that follows a busy one")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks-load.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_load.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cegate-bench-load-") as scratch:
        rows = measure(args.steps, args.repeats, args.settle, Path(scratch))
    info = machine()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "steps": args.steps, "runs": rows}, indent=2) + "\n")
    write_doc(args.doc, rows, info, args.steps)
    print(args.doc.read_text())


if __name__ == "__main__":
    main()
