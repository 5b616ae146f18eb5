"""The run folder as a place: checked before anything slow runs, locked for one writer, the old
run set aside by `--overwrite` and dropped or put back once the new one ends.

Everything here works on names (cegate_cli.run.layout) and the lock (cegate_cli.run.lock); what
the files hold is the business of `manifest` (run.json, config.yaml) and `weights`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cegate_cli.run.lock as runlock
from cegate_cli.errors import OutputExistsError, RunFolderError
from cegate_cli.infra.atomic import writing
from cegate_cli.run.layout import REPLACED_DIR, RUN_JSON, STATE_DIR
from cegate_cli.run.replaced import move_aside, put_back, set_aside, stopped_overwrite_note, undo_partial
from cegate_cli.run.state import has_state, refuse_legacy


def check_run_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Everything about `-o` that can be checked without writing: run before the slow steps
    (backbone download, statistics) and, above all, before an old run is replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a folder; choose another -o/--out for the run folder")
    runlock.probe(out)
    stopped = stopped_overwrite_note(out)
    if resume:
        refuse_legacy(out / STATE_DIR)
        if not has_state(out / STATE_DIR):
            raise RunFolderError(stopped or f"{out}: no resume state ({STATE_DIR}/); start the run without --resume")
        return
    if _holds_files(out):
        if not overwrite:
            raise OutputExistsError(
                stopped
                or f"{out} already exists and is not empty; choose another -o/--out, add --resume to continue an interrupted run, or --overwrite to replace it"
            )
        if not (_holds_run(out) or set_aside(out) is not None):
            raise OutputExistsError(f"{out} is not empty and is not a cegate run folder; refusing to write into it")


def _holds_run(out: Path) -> bool:
    return (out / RUN_JSON).exists() or (out / STATE_DIR).exists()


def replaced_run_note(out: Path, *, overwrite: bool, resume: bool) -> str | None:
    """What `adapt` says as it starts in a folder where an earlier `--overwrite` stopped: where the
    earlier run is kept while this run goes on (None when nothing is set aside)."""
    held = set_aside(out)
    if held is None or held.partial or held.new_status == "complete" or not (overwrite or resume):
        return None
    what = "continues the stopped run" if resume else "replaces the stopped run"
    return (
        f"note: this run {what}; the earlier run stays in {held.folder} until it completes (after a Ctrl-C, `cegate restore {out}` puts the earlier run back)"
    )


def prepare_run_dir(out: Path, *, overwrite: bool, resume: bool) -> Path:
    """Lock the run folder for this process and, with --overwrite, empty the old run.

    Called once every option and input has been checked, right before the new run writes its
    first file: a mistake on the command line never costs the user the run they already have.
    The lock is held until `release_run_dir` (or the process ends); a second `adapt` into the
    same folder is refused while it is held.
    """
    out = Path(out)
    check_run_dir(out, overwrite=overwrite, resume=resume)
    with writing(out, "create the run folder"):
        out.mkdir(parents=True, exist_ok=True)
    runlock.hold(out)
    try:
        check_run_dir(out, overwrite=overwrite, resume=resume)  # again, now that nobody else can change it
        undo_partial(out)  # a set-aside cut short by a kill: every file is the earlier run's
        if not resume and _holds_run(out):
            move_aside(out)
    except BaseException:
        runlock.release(out)
        raise
    return out


def settle_replaced_run(out: Path, *, completed: bool, failed: bool) -> bool:
    """After `adapt --overwrite`: drop the old run once the new one is complete, or put the old run
    back when the new one failed (an error, a full disk). An interrupted new run (Ctrl-C) stays,
    resumable, with the old one kept in REPLACED_DIR until the resumed run completes.
    Returns True when the old run was put back."""
    out = Path(out)
    aside = out / REPLACED_DIR
    if not aside.is_dir():
        return False
    if completed:
        shutil.rmtree(aside, ignore_errors=True)
        return False
    if not failed:
        return False
    put_back(out)
    return True


def release_run_dir(out: Path) -> None:
    """Let other processes write the folder again (the end of `adapt`, success or not)."""
    runlock.release(out)


def _holds_files(folder: Path) -> bool:
    """Anything in `folder` besides the lock file (which every run folder keeps)."""
    return folder.is_dir() and any(entry.name != runlock.LOCK_NAME for entry in folder.iterdir())


def state_dir(run_dir: Path) -> Path:
    """Where `adapt` keeps its resume state (cegate_cli.run.state)."""
    return Path(run_dir) / STATE_DIR
