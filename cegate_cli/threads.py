"""How many CPU threads cegate computes with, and how idle threads wait: a laptop that also runs
other things must slow cegate down gracefully, not collapse it.

Two measured problems on a 2-core machine with one busy loop on the other core (issue 14):
`cegate demo --steps 20` went from 14 s idle to 28 s, and to 18 s with OMP_WAIT_POLICY=PASSIVE;
with a few other jobs Fisher scoring of 16 crops took 41-104 s instead of 0.65 s.

- PyTorch's OpenMP runtime (libgomp) lets a thread that finished its share spin on the CPU
  before it sleeps. When another program holds a core, the spinning threads take turns with it,
  and every parallel region waits for its slowest thread. PASSIVE makes them sleep at once.
  libgomp reads OMP_WAIT_POLICY once, when it is loaded, which is when torch is first imported:
  `prefer_passive_waiting` must run before that (the CLI does it first thing, cegate_cli/cli.py).
- torch starts one thread per core it may run on. Cores that other programs keep busy only add
  threads that wait for each other; `choose_threads` counts the cores free now instead.

This module must not import torch at import time.
"""

from __future__ import annotations

import math
import os
import sys
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
    """1-minute load average when the choice was made."""
    reason: str
    """Where the number came from: "--threads", "OMP_NUM_THREADS" or "free cores"."""

    def describe(self) -> str:
        load = "unknown" if self.load is None else f"{self.load:.2f}"
        policy = os.environ.get(WAIT_POLICY_ENV, "(unset)")
        if _late:
            policy += ", set after torch was imported: OpenMP keeps its default"
        return (
            f"threads: {self.threads} ({self.reason}; {self.cores} usable cores, 1-minute load {load}; "
            f"{WAIT_POLICY_ENV}={policy})"
        )


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
    free now. `cores` and `load` default to this machine's (given in tests)."""
    from cegate_cli.errors import InputError

    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    if requested is not None:
        if requested < 1:
            raise InputError(f"--threads {requested}: must be at least 1 (leave it out to use the cores free now)")
        return ThreadChoice(requested, cores, load, "--threads")
    preset = environ.get("OMP_NUM_THREADS", "").strip()
    if preset:
        try:
            value = int(preset)
        except ValueError:
            value = 0
        if value >= 1:
            return ThreadChoice(value, cores, load, "OMP_NUM_THREADS")
    return ThreadChoice(free_cores(cores, load), cores, load, "free cores")


def apply_threads(choice: ThreadChoice) -> None:
    """Make torch compute with `choice.threads` threads (intra-op; imports torch)."""
    import torch

    torch.set_num_threads(choice.threads)
