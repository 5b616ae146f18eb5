"""The earlier run that `adapt --overwrite` keeps aside until the new run completes.

`--overwrite` never deletes the run it replaces before the new one is complete: run/folder.py
moves the earlier run's files into RUN/.replaced-run and drops them once the new run completes,
or puts them back when the new run fails. The files are moved into RUN/.replaced-run.partial
first and that folder is renamed once all are there, so a kill in the middle of the move leaves
a folder known to hold only part of the earlier run (the rest is still in RUN, untouched).

A run killed outright (kill -9, a power cut) or stopped by Ctrl-C leaves the new, unfinished run
in RUN and the earlier run aside. Here that state is found (`set_aside`), told in one line with
the ways back (`stopped_overwrite_note`, what every command touching the folder says) and undone
(`restore`, what `cegate restore RUN` runs). Nothing here deletes the earlier run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cegate_cli.run.lock as runlock
from cegate_cli.errors import CegateError, RunFolderError
from cegate_cli.infra.atomic import writing
from cegate_cli.infra.documents import read_json
from cegate_cli.run.layout import REPLACED_DIR, RUN_FILES, RUN_JSON, STATE_DIR

PARTIAL_DIR = f"{REPLACED_DIR}.partial"
"""Where the earlier run's files go while they are moved; renamed to REPLACED_DIR once all are there."""


@dataclass(frozen=True)
class SetAside:
    """An earlier run kept aside in a run folder, and what stands in its place."""

    folder: Path
    """RUN/.replaced-run, or RUN/.replaced-run.partial when the move itself was cut short."""
    partial: bool
    """The move was cut short: the new run never started, RUN holds the rest of the earlier run."""
    new_status: str | None
    """The status in RUN/run.json ("training", "failed", "complete"); None without one."""
    resumable: bool
    """RUN holds a resume state of the new run (`adapt --resume` continues it)."""


def _holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def _status(run_dir: Path) -> str | None:
    try:
        data = read_json(run_dir / RUN_JSON)
    except CegateError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else None


def set_aside(run_dir: Path) -> SetAside | None:
    """The earlier run `adapt --overwrite` set aside in `run_dir`, if one is there."""
    from cegate_cli.run.state import has_state  # torch: only once something is set aside

    run_dir = Path(run_dir)
    for name, partial in ((PARTIAL_DIR, True), (REPLACED_DIR, False)):
        folder = run_dir / name
        if _holds_run(folder):
            status = _status(run_dir) if (run_dir / RUN_JSON).is_file() else None
            return SetAside(folder, partial, status, has_state(run_dir / STATE_DIR))
    return None


def _writing_now(run_dir: Path) -> bool:
    """Whether another process holds the folder (an `adapt` still running, not a stopped one)."""
    try:
        runlock.probe(run_dir)
    except RunFolderError:
        return True
    return False


def stopped_overwrite_note(run_dir: Path) -> str | None:
    """One line for a folder where `adapt --overwrite` stopped before its new run completed:
    where the earlier run is and the ways back. None when there is nothing to say (no earlier
    run aside, the new run completed, or an `adapt` is still writing the folder)."""
    run_dir = Path(run_dir)
    held = set_aside(run_dir)
    if held is None or _writing_now(run_dir):
        return None
    restore = f"`cegate restore {run_dir}`"
    if held.partial:
        return (
            f"{run_dir}: an `adapt --overwrite` here was stopped while it set the earlier run aside (part of it is in "
            f"{held.folder}); put it back with {restore}"
        )
    if held.new_status == "complete":
        return None
    ways = [f"put it back with {restore}"]
    if held.resumable:
        ways.append(f"continue the new run with `cegate adapt ... -o {run_dir} --resume` (the earlier run is dropped once it completes)")
    ways.append("start the new run again with --overwrite (the earlier run stays aside until one completes)")
    return (
        f"{run_dir}: an `adapt --overwrite` here stopped before its new run completed; the earlier run is kept in "
        f"{held.folder}: {', '.join(ways[:-1])}, or {ways[-1]}"
    )


def move_aside(run_dir: Path) -> None:
    """Set the run in `run_dir` aside into REPLACED_DIR (through PARTIAL_DIR, see the module
    docstring). Where an earlier run is already aside and the run in its place never completed
    (an `--overwrite` that was stopped), the earlier run stays aside and the unfinished one is
    what gets replaced: the last complete run is never the one dropped."""
    run_dir = Path(run_dir)
    undo_partial(run_dir)
    aside = run_dir / REPLACED_DIR
    with writing(run_dir, "set the old run aside"):
        if _holds_run(aside):
            if _status(run_dir) != "complete":
                drop_run_files(run_dir)
                return
            shutil.rmtree(aside)  # the run in its place completed: the aside was due to be dropped
        elif aside.exists():
            shutil.rmtree(aside)
        partial = run_dir / PARTIAL_DIR
        partial.mkdir()
        for name in RUN_FILES:
            if (run_dir / name).exists():
                (run_dir / name).replace(partial / name)
        partial.replace(aside)


def undo_partial(run_dir: Path) -> bool:
    """Move back the files of a set-aside that was cut short (all of them the earlier run's: the
    new run starts only after the move). Returns whether there was one."""
    partial = Path(run_dir) / PARTIAL_DIR
    if not partial.is_dir():
        return False
    with writing(run_dir, "put the earlier run back"):
        for entry in list(partial.iterdir()):
            target = Path(run_dir) / entry.name
            if not target.exists():
                entry.replace(target)
        if not any(partial.iterdir()):
            partial.rmdir()
    return True


def drop_run_files(run_dir: Path) -> None:
    """Remove the run files (RUN_FILES) in `run_dir`; the lock and anything set aside stay."""
    for name in RUN_FILES:
        target = Path(run_dir) / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def put_back(run_dir: Path) -> None:
    """Replace the run in `run_dir` by the one in REPLACED_DIR (the caller holds the folder)."""
    run_dir = Path(run_dir)
    aside = run_dir / REPLACED_DIR
    with writing(run_dir, "put the old run back"):
        drop_run_files(run_dir)
        for entry in aside.iterdir():
            entry.replace(run_dir / entry.name)
        aside.rmdir()


def restore(run_dir: Path) -> str:
    """Put back the earlier run an interrupted `adapt --overwrite` set aside, dropping the
    unfinished new run; what `cegate restore RUN` runs. Returns one line saying what was done."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder; check the path")
    held = set_aside(run_dir)
    if held is None:
        raise RunFolderError(f"{run_dir}: no earlier run is set aside here (nothing in {run_dir / REPLACED_DIR}); nothing to restore")
    runlock.hold(run_dir)  # refused while an `adapt` writes the folder
    try:
        if held.partial:
            undo_partial(run_dir)
            return f"{run_dir}: the earlier run is back in place"
        if held.new_status == "complete":
            raise RunFolderError(
                f"{run_dir}: the new run completed, so it stays; the earlier run left in {held.folder} is no longer "
                "needed: move that folder elsewhere to keep it, or delete it"
            )
        put_back(run_dir)
    finally:
        runlock.release(run_dir)
    return f"{run_dir}: the earlier run is back in place; the unfinished run that was replacing it is removed"
