"""How many CPU threads cegate computes with, and how idle threads wait: a laptop that also runs
other things must slow cegate down gracefully, not collapse it.

Two problems on a small machine where other programs keep a core busy (figures in
docs/design-measurements.md): threads that spin while they wait, and more threads than free cores.

- PyTorch's OpenMP runtime (libgomp) lets a thread that finished its share spin on the CPU
  before it sleeps. When another program holds a core, the spinning threads take turns with it,
  and every parallel region waits for its slowest thread. PASSIVE makes them sleep at once.
  libgomp reads OMP_WAIT_POLICY once, when it is loaded, which is when torch is first imported:
  `prefer_passive_waiting` must run before that (the CLI does it first thing, cegate_cli/cli.py).
- torch starts one thread per core it may run on. Cores that other programs keep busy only add
  threads that wait for each other; `choose_threads` counts the cores free now instead. "Now" is
  a short sample of the kernel's per-core counters (Linux /proc/stat, 0.3 s, cegate asleep),
  not the 1-minute load average: that average still holds a run that just ended, so a second
  run started right after the first would take one thread on an idle machine, and run slower
  for it. The load average is the fallback elsewhere.

This module must not import torch at import time.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"
_late = False  # whether torch was already imported when prefer_passive_waiting ran


def prefer_passive_waiting(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user set it; returns the policy in effect.

    Only takes effect if torch (and so libgomp) has not been imported yet in this process; child
    processes (torchrun workers, benchmark subprocesses) inherit it either way.
    """
    global _late
    _late = "torch" in sys.modules
    return environ.setdefault(WAIT_POLICY_ENV, PASSIVE)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` narrow),
    not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


SAMPLE_SECONDS = 0.3
THREADS_PER_CORE = 4
"""`--threads` may oversubscribe the usable cores this far, no further: each is an OS thread with
its own stack, and beyond the cores they only wait for each other."""


def cpu_times(stat_text: str, cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies of each of `cpus` from the text of /proc/stat (idle includes iowait)."""
    times = {}
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [int(v) for v in rest.split()]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])  # guest times are already inside user and nice
        times[int(name[3:])] = (idle, total)
    return times


def busy_between(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float | None:
    """Cores kept busy between two `cpu_times` readings (0 = all idle, len = all busy)."""
    busy = 0.0
    for cpu, (idle0, total0) in before.items():
        if cpu not in after:
            return None
        idle1, total1 = after[cpu]
        elapsed = total1 - total0
        if elapsed <= 0:
            return None
        busy += 1.0 - min(1.0, max(0.0, (idle1 - idle0) / elapsed))
    return busy if before else None


def busy_cores_now(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores other programs keep busy right now (Linux; None elsewhere).

    Sampled while this process sleeps, so cegate does not count itself."""
    try:
        cpus = set(os.sched_getaffinity(0))
        with open("/proc/stat", encoding="ascii") as handle:
            before = cpu_times(handle.read(), cpus)
        time.sleep(seconds)
        with open("/proc/stat", encoding="ascii") as handle:
            after = cpu_times(handle.read(), cpus)
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    return busy_between(before, after)


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cores: int
    """Cores this process may run on."""
    load: float | None
    """Cores other work kept busy when the choice was made (see `measured`)."""
    reason: str
    """Where the number came from: "--threads", "OMP_NUM_THREADS" or "free cores"."""
    measured: str = "1-minute load"
    """How `load` was measured: "cores busy now" (a /proc/stat sample) or "1-minute load"."""

    def describe(self) -> str:
        load = "unknown" if self.load is None else f"{self.load:.2f}"
        policy = os.environ.get(WAIT_POLICY_ENV, "(unset)")
        if _late:
            policy += ", set after torch was imported: OpenMP keeps its default"
        return f"threads: {self.threads} ({self.reason}; {self.cores} usable cores, {self.measured} {load}; {WAIT_POLICY_ENV}={policy})"


def free_cores(cores: int, load: float | None) -> int:
    """Cores not kept busy by other work: `cores` minus the load, rounded, at least 1.

    The load average counts runnable processes, so one busy loop on a 2-core machine reads about
    1.0 and leaves 1 core. Read before cegate starts computing, so it does not count cegate itself.
    """
    if load is None or not math.isfinite(load):
        return cores
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def choose_threads(
    requested: int | None = None,
    *,
    cores: int | None = None,
    load: float | None = None,
    environ: MutableMapping[str, str] = os.environ,
) -> ThreadChoice:
    """The thread count to compute with: `requested` (`--threads`) if given, else OMP_NUM_THREADS
    if the user (or torchrun, which gives each of several processes one) set it, else the cores
    free now. `cores` and `load` (cores other work keeps busy) default to this machine's: a
    sample of the cores busy now, else the 1-minute load average (given in tests)."""
    from cegate_cli.errors import InputError

    cores = usable_cores() if cores is None else cores
    measured = "1-minute load"
    if requested is not None:
        if requested < 1:
            raise InputError(f"--threads {requested}: must be at least 1 (leave it out to use the cores free now)")
        most = THREADS_PER_CORE * cores
        if requested > most:
            raise InputError(
                f"--threads {requested}: at most {most}, {THREADS_PER_CORE} per core cegate may use ({cores} here); "
                "threads beyond the cores only wait for each other (leave it out to use the cores free now)"
            )
        return ThreadChoice(requested, cores, load, "--threads", measured)
    if load is None and not environ.get("OMP_NUM_THREADS", "").strip():
        load = busy_cores_now()
        measured = "cores busy now"
        if load is None:
            load, measured = load_average(), "1-minute load"
    preset = environ.get("OMP_NUM_THREADS", "").strip()
    if preset:
        try:
            value = int(preset)
        except ValueError:
            value = 0
        if value >= 1:
            return ThreadChoice(value, cores, load, "OMP_NUM_THREADS", measured)
    return ThreadChoice(free_cores(cores, load), cores, load, "free cores", measured)


def apply_threads(choice: ThreadChoice) -> None:
    """Make torch compute with `choice.threads` threads (intra-op; imports torch)."""
    import torch

    torch.set_num_threads(choice.threads)
