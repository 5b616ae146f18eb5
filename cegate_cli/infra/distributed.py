"""Several processes (one per GPU, on one or many machines) under PyTorch's own launcher, `torchrun`.

cegate never starts processes or opens sockets itself: `torchrun` starts one process per GPU and
sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; this module reads them, joins the
process group (NCCL for CUDA tensors, gloo for CPU tensors) and offers the few collective steps
`adapt` and `predict` need. Without torchrun (or with a single process) no process group is
created and every helper here is a no-op, so one-process runs behave exactly as before.

Rules the callers follow:
- rank 0 alone writes shared files (`on_main`), everyone else waits for its result or its error,
  so a user error (an existing output folder) stops every rank with the same message instead of
  leaving the others hanging in a collective;
- decisions every rank must share (e.g. the Fisher selection, pooled in train/ddp.py) are computed from all-reduced numbers
  and then checked (`check_agreement`), because silently diverging ranks would train garbage.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from cegate_cli.errors import CegateError, InputError

T = TypeVar("T")

TIMEOUT_ENV = "CEGATE_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 180.0
"""How long a rank waits in a collective. Long on purpose: in `predict` a rank that finished its
scenes waits at the final gather for the slowest rank, which on a CPU node can take an hour; a
rank that really died is noticed by torchrun itself, which stops the others."""
RANK_LOG_ENV = "CEGATE_RANK_LOG"
"""A folder: when set, every rank appends what it decided and wrote to <folder>/rank<N>.jsonl
(used by the tests to see which rank did what; useful when debugging a cluster job)."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """True when there is more than one process, i.e. a process group exists."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_world: World | None = None


def launched_by_torchrun(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """torchrun (and `torch.distributed.run`) set all of these for every worker."""
    return all(name in environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def world() -> World:
    """This process's World; joins the process group on the first call under torchrun.

    Joining lazily (from `adapt` and `predict`, not at import) keeps `cegate --help` and every
    command that needs no collectives free of any network set-up.
    """
    global _world
    if _world is None:
        _world = _join()
    return _world


def _join() -> World:
    if dist.is_available() and dist.is_initialized():  # a Python caller that set up its own group: use it
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)), str(dist.get_backend()))
    if not launched_by_torchrun():
        return World()
    rank, size, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if size <= 1:
        return World(rank=0, size=1, local_rank=local_rank)
    has_cuda = torch.cuda.is_available()
    if has_cuda and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # NCCL and plain `cuda` tensors then use this process's GPU
    # gloo is always there for CPU tensors (Fisher scores, small objects, `--device cpu`); NCCL
    # carries the CUDA gradients when there is a GPU.
    backend = "cpu:gloo,cuda:nccl" if has_cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(minutes=_timeout_minutes()))
    atexit.register(cleanup)
    return World(rank, size, local_rank, backend)


def _timeout_minutes() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT_MINUTES
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV}={text!r}: give the collective timeout in minutes, e.g. 180")
    return value


def is_main() -> bool:
    return world().is_main


def barrier() -> None:
    if world().active:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (registered at exit; NCCL warns about groups never destroyed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device | str) -> torch.device | str:
    """`cuda` (or `auto` on a GPU machine) means this process's own GPU, `cuda:LOCAL_RANK`."""
    current = world()
    name = str(device)
    if not current.active or not (name == "cuda" or (name == "auto" and torch.cuda.is_available())):
        return device
    count = torch.cuda.device_count()
    if current.local_rank >= count:
        raise InputError(
            f"torchrun started process {current.local_rank} on a machine with {count} GPU(s); "
            f"use --nproc-per-node {max(count, 1)} (one process per GPU), or --device cpu"
        )
    target = torch.device("cuda", current.local_rank)
    return target if isinstance(device, torch.device) else str(target)


# -- one rank acts, every rank learns the outcome -------------------------------------------------
def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` on rank 0 only; every rank returns its result, or raises the CegateError it raised.

    Errors the user can fix are sent to every rank, so all of them stop with the same message
    (instead of ranks 1.. waiting forever for a rank 0 that already quit). Other exceptions are
    bugs: rank 0 raises them and the other ranks stop with a pointer to rank 0's traceback.
    """
    return _on_main(fn, True, *args, **kwargs)


def check_on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`on_main` for a check that only reads (rank 0's view of the file system decides, every
    rank stops alike); unlike `on_main` it is not recorded as a write in the rank log."""
    return _on_main(fn, False, *args, **kwargs)


def _on_main(fn: Callable[..., T], log: bool, *args: Any, **kwargs: Any) -> T:
    current = world()
    if not current.active:
        return fn(*args, **kwargs)
    packet: list[Any] = [None]
    if current.is_main:
        try:
            packet[0] = ("ok", fn(*args, **kwargs))
            if log:
                rank_log("on_main", call=getattr(fn, "__name__", repr(fn)))
        except CegateError as exc:
            packet[0] = ("error", exc)
        except BaseException as exc:
            dist.broadcast_object_list([("crash", f"{type(exc).__name__}: {exc}")], src=0)
            raise
    dist.broadcast_object_list(packet, src=0)
    status, value = packet[0]
    if status == "ok":
        return value
    if status == "error":
        raise value
    raise RuntimeError(f"rank 0 failed in {getattr(fn, '__name__', fn)} ({value}); see its traceback")


def broadcast_object(value: T, src: int = 0) -> T:
    """`value` as rank `src` has it (small picklable objects only)."""
    if not world().active:
        return value
    packet = [value]
    dist.broadcast_object_list(packet, src=src)
    return packet[0]


def gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (small picklable objects only)."""
    current = world()
    if not current.active:
        return [value]
    gathered: list[Any] = [None] * current.size
    dist.all_gather_object(gathered, value)
    return gathered


def check_agreement(value: Any, what: str) -> None:
    """Stop every rank if the ranks disagree about `value` (e.g. the selected modules).

    Cheap (one small gather) and worth it: ranks that trained different modules would average
    gradients of different parameters, or deadlock inside DistributedDataParallel.
    """
    values = gather_objects(value)
    if any(v != values[0] for v in values[1:]):
        differing = [rank for rank, v in enumerate(values) if v != values[0]]
        raise RuntimeError(f"ranks disagree about {what}: rank 0 has {values[0]!r}, ranks {differing} differ")


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`: every world.size-th item starting at its rank (whole items)."""
    current = world()
    return list(items[current.rank :: current.size])


# -- debugging a multi-process job -----------------------------------------------------------
def rank_log(event: str, **fields: Any) -> None:
    """Append one JSON line to $CEGATE_RANK_LOG/rank<N>.jsonl when that variable is set.

    A plain append (not an atomic rename): it is a diagnostic trace that grows line by line,
    never an output anything else reads back as a whole.
    """
    folder = os.environ.get(RANK_LOG_ENV)
    if not folder:
        return
    current = world()
    path = Path(folder) / f"rank{current.rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"rank": current.rank, "world": current.size, "event": event, **fields}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
