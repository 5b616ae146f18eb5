"""One writer per run folder: an OS file lock held by `adapt` for as long as it writes the run.

Two `adapt` processes pointed at the same `-o` would otherwise both succeed while one silently
replaced the other's files. The writer holds `fcntl.flock` on `RUN/.cegate.lock` (the operating system
drops it when the process ends, even on `kill -9`, so a crashed run never leaves a stale lock) and
writes its PID into the file so the second process can say who holds it.

The lock file stays in the folder after the run, empty: removing it would let a third process
lock a fresh file while a second still holds the old one. Systems without `fcntl` (Windows) run
unlocked.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from cegate_cli.errors import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".cegate.lock"
ACQUIRE_SECONDS = 1.0
"""How long `acquire` retries: long enough to outlast another process's `probe` (microseconds),
short enough that a second `adapt` is told at once that the folder is taken."""

_held: dict[Path, RunLock] = {}


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_NAME


class RunLock:
    """An exclusive, non-blocking lock on `folder/.cegate.lock`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = lock_path(folder)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise `RunFolderError` naming the folder and the holder's PID."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunFolderError(f"{self.folder}: cannot write into this folder ({exc.strerror or exc}); choose another -o/--out") from exc
        if fcntl is not None:
            deadline = time.monotonic() + ACQUIRE_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_pid(fd)
                        os.close(fd)
                        raise _busy(self.folder, holder) from None
                    time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise RunFolderError(f"{self.path}: cannot write ({exc.strerror or exc}); free disk space or choose another -o/--out") from exc
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the file (a finished run's folder reads the same after any later `adapt` that
        only checked it) and unlock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        with contextlib.suppress(OSError):
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def probe(folder: Path) -> None:
    """Raise the same error as `acquire` when another process holds the folder, without taking
    the lock for longer than a moment and without creating anything: run before the slow checks
    (backbone download) so a second `adapt` stops at once."""
    path = lock_path(folder)
    if fcntl is None or not path.is_file() or Path(folder).resolve() in _held:
        return  # nothing to probe, or this very process holds it
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # unreadable: `acquire` will say what is wrong
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise _busy(Path(folder), holder) from None
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def hold(folder: Path) -> None:
    """Lock `folder` for this process until `release(folder)` (or the process ends)."""
    key = Path(folder).resolve()
    if key not in _held:
        _held[key] = RunLock(folder).acquire()


def release(folder: Path) -> None:
    lock = _held.pop(Path(folder).resolve(), None)
    if lock is not None:
        lock.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _busy(folder: Path, pid: int | None) -> RunFolderError:
    who = f"another cegate process (PID {pid})" if pid is not None else "another cegate process"
    return RunFolderError(f"{folder}: {who} is writing this run folder; wait for it to finish, or choose another -o/--out")
