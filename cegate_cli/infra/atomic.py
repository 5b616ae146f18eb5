"""Write files so that a crash never leaves a half-written one under the final name.

Everything cegate writes goes to a temporary name in the same folder (same file system, so the
final `os.replace` is atomic) and is renamed only once complete. A failure removes the temporary
file and leaves whatever was there before untouched.

A process killed outright (`kill -9`, out of memory, power loss) cannot remove its temporary, so
temporary names carry the writer's PID and host: `.<name>.tmp-<pid>@<host>-<random><suffix>`. The
first write into a folder removes the temporaries (and GDAL's sidecars of them) whose writer is
gone; a temporary of a live process, of another machine, or without that tag is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cegate_cli.errors import CegateError, RunFolderError

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMPORARY = re.compile(r"^\..+\.tmp-(?P<pid>\d+)@(?P<host>[0-9a-f]{8})-")
_swept: set[Path] = set()
_swept_lock = threading.Lock()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` if the block succeeds.

    `suffix` defaults to the final name's suffix, so drivers that guess the format from the
    extension (GDAL, pyogrio) still do the right thing.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-{os.getpid()}@{_HOST}-", suffix=final.suffix if suffix is None else suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers create the file themselves; some (GDAL, pyogrio) refuse to overwrite
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp's 0600 would hide outputs from other users
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def sweep_stale_temporaries(folder: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Remove temporaries in `folder` left by writers on this machine whose process is gone.

    Runs once per folder and process (unless `force`): stale files only appear when a process
    dies, and listing a folder of thousands of outputs before every write would cost more than
    it saves. Returns what was removed.
    """
    folder = Path(folder)
    key = folder.resolve()
    with _swept_lock:
        if key in _swept and not force:
            return []
        _swept.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != _HOST:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, already dead but not yet reaped by
    its parent, counts as gone: it will never finish its file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True  # cannot tell: keep its files
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str, then: str | None = None) -> Iterator[None]:
    """Turn a failed write into one line naming `path` and what to do (`then`, if given, is what
    to do once there is space again).

    Disk full, a folder that is read-only or vanished: Python raises OSError, and torch and
    safetensors raise RuntimeError or their own errors with texts like "unexpected pos". The user
    needs the file and the fix, not the traceback. cegate's own errors pass through unchanged.
    """
    try:
        yield
    except CegateError:
        raise
    except Exception as exc:
        if not isinstance(exc, (OSError, RuntimeError)) and type(exc).__name__ != "SafetensorError":
            raise
        remedy = _remedy(exc) + (f"; {then}" if then else "")
        raise RunFolderError(f"{path}: cannot {what} ({_reason(exc)}); {remedy}") from exc


def os_error_words(exc: BaseException) -> str | None:
    """An OSError as one line without Python's "[Errno 28]": the file, the system's reason and, for
    a full, read-only or forbidden place, the fix. None for anything that is not a plain OSError
    (cegate's own errors already speak for themselves)."""
    if not isinstance(exc, OSError) or isinstance(exc, CegateError) or not exc.strerror:
        return None
    name = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write{name} ({exc.strerror}); free disk space or choose another output folder"
    if exc.errno == errno.EROFS:
        return f"cannot write{name} ({exc.strerror}); choose an output folder on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{exc.filename or 'a file'}: {exc.strerror}; check its permissions, or choose another output folder"
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _remedy(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable or choose another -o/--out"
    return "free disk space or choose another -o/--out"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `final` atomically (UTF-8), flushed to disk before the rename."""
    with atomic_path(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json_atomic(final: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as indented JSON to `final` atomically."""
    write_text_atomic(final, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def scratch_path(beside: str | os.PathLike[str], suffix: str) -> Iterator[Path]:
    """Yield a temporary path beside `beside` for a file needed only while another is made from it.

    A raster streamed strip by strip, for instance, before GDAL copies it into its final layout.
    The file (and any GDAL sidecar of it: .aux.xml, .ovr) is removed when the block ends, however
    it ends. It is named like `atomic_path`'s temporaries, so one left by a killed process is
    swept the same way, and it lies in the same folder, whose disk the final file needs anyway.
    """
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(beside.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{beside.name}.tmp-{os.getpid()}@{_HOST}-", suffix=suffix, dir=beside.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # GDAL creates the file itself
    try:
        yield tmp
    finally:
        for leftover in (tmp, Path(f"{tmp}.aux.xml"), Path(f"{tmp}.ovr")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
