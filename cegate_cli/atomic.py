"""Write files so that a crash never leaves a half-written one under the final name.

Everything cegate writes goes to a temporary name in the same folder (same file system, so the
final `os.replace` is atomic) and is renamed only once complete. A failure removes the temporary
file and leaves whatever was there before untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cegate_cli.errors import CegateError, RunFolderError



@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` if the block succeeds.

    `suffix` defaults to the final name's suffix, so drivers that guess the format from the
    extension (GDAL, pyogrio) still do the right thing.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.tmp-", suffix=final.suffix if suffix is None else suffix, dir=final.parent
    )
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
