"""The resume state of `adapt` (`RUN/state/`): tensors in safetensors, the rest in JSON, no pickle.

A run folder is something users download, copy and share. A `torch.load`ed pickle would let
`adapt --resume` on a crafted folder run whatever code the file asked for, so the state is two
files that can only hold data:

    state/trainer.safetensors   every tensor (toolbox, head, best weights, Adam moments, RNG, teacher)
    state/trainer.json          everything else; each tensor appears as {"__tensor__": "<name>"}

`write_state` and `read_state` are the only writer and reader, a matching pair: the reader
accepts exactly what the writer produces (same format string, same save id in both files) and
raises `RunFolderError` for anything else. An old `trainer.pt` is refused by name, never opened.

Both files are written under temporary names and renamed. A save id, recorded in the JSON and in
the safetensors metadata, ties the two: a crash between the two renames would pair new tensors
with an old record, so the previous pair is first hard-linked to `trainer.prev.*` and the reader
falls back to it when the current pair does not match; once both new files are in place the
backup is removed. The previous state therefore survives any crash or failed write.

Floats go through JSON unchanged (Python writes the shortest repr that reads back to the same
double), tensors through safetensors bit for bit, so a resumed run stays bit-exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cegate_cli.errors import CegateError, DocumentError, RunFolderError
from cegate_cli.infra.atomic import atomic_path, write_text_atomic
from cegate_cli.infra.documents import read_json

STATE_FORMAT = "cegate-train-state/2"
TENSORS = "trainer.safetensors"
RECORD = "trainer.json"
LEGACY = "trainer.pt"
"""The pickled state of cegate before format 2: refused, never loaded."""
MAX_RECORD_BYTES = 1 << 30
"""trainer.json keeps every step's loss: about 40 bytes a step, so 1 GiB is over 20 million steps."""
_PREVIOUS = "trainer.prev"
_TENSOR_REF = "__tensor__"


def tensors_path(state_dir: Path) -> Path:
    return Path(state_dir) / TENSORS


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD


def has_state(state_dir: Path) -> bool:
    """True when a resume state of the current format is there (the record decides)."""
    return record_path(state_dir).is_file() or _previous(state_dir)[1].is_file()


def refuse_legacy(state_dir: Path) -> None:
    """Stop on a pickled state from an older cegate, without reading a byte of it."""
    legacy = Path(state_dir) / LEGACY
    if legacy.exists():
        raise RunFolderError(
            f"{legacy}: the resume state format changed (pickled trainer.pt is no longer read, for safety); "
            "this run cannot be resumed: start over with --overwrite"
        )


def plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), for comparing a saved value with
    a freshly computed one."""
    return json.loads(json.dumps(value))


# -- writer ------------------------------------------------------------------------------------
def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` (nested dicts/lists of JSON scalars and tensors) atomically into `state_dir`.

    On any failure the previous state is left as it was and `RunFolderError` names the file and
    what to do (the common causes being a full disk or a folder that became read-only).
    """
    state_dir = Path(state_dir)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, [], tensors)
    save_id = uuid.uuid4().hex
    record = json.dumps({"format": STATE_FORMAT, "save_id": save_id, "state": encoded}, allow_nan=True) + "\n"
    current_tensors, current_record = tensors_path(state_dir), record_path(state_dir)
    target = current_tensors
    had_state = has_state(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            tensor_tmp = stack.enter_context(atomic_path(current_tensors))
            save_file(tensors, str(tensor_tmp), metadata={"format": STATE_FORMAT, "save_id": save_id})
            _fsync(tensor_tmp)
            target = current_record
            backed_up = _back_up(state_dir)
            # Leaving the block renames the tensors into place; the record follows it below.
        write_text_atomic(current_record, record)
        if backed_up:
            for path in _previous(state_dir):
                path.unlink(missing_ok=True)
    except CegateError:
        raise
    except (OSError, RuntimeError, SafetensorError) as exc:
        if had_state:
            todo = (
                "the last saved state is kept: free disk space (or make the folder writable) and run the "
                "same command with --resume, or start over with another -o"
            )
        else:
            todo = "free disk space (or make the folder writable) and start again with --overwrite, or choose another -o"
        raise RunFolderError(f"{target}: cannot write the resume state ({_reason(exc)}); {todo}") from exc


def _back_up(state_dir: Path) -> bool:
    """Hard-link the current consistent pair to trainer.prev.* so a crash between the two renames
    still leaves a readable state. False when there is nothing to keep (or no hard links)."""
    current = (tensors_path(state_dir), record_path(state_dir))
    backup = _previous(state_dir)
    if all(path.is_file() for path in backup):
        # An earlier save stopped before it could clean up: that backup is the last pair known to
        # match, while the current pair may be the half-renamed one. Keep it.
        return True
    if not all(path.is_file() for path in current):
        return False
    try:
        for source, kept in zip(current, backup):
            with atomic_path(kept) as temporary:
                os.link(source, temporary)
    except OSError:  # a file system without hard links: the rename window stays (microseconds)
        for path in backup:
            path.unlink(missing_ok=True)
        return False
    return True


def _encode(value: Any, path: list[str], tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = "/".join(path) or "tensor"
        while name in tensors:
            name += "'"
        # A copy of its own: safetensors refuses tensors that share memory.
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {_TENSOR_REF: name}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or key == _TENSOR_REF:
                raise TypeError(f"resume state key {key!r} at {'/'.join(path)}: keys must be strings other than {_TENSOR_REF!r}")
            out[key] = _encode(item, [*path, key], tensors)
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(item, [*path, str(i)], tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"resume state value at {'/'.join(path)} is a {type(value).__name__}; only tensors and JSON values are stored")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # not Python's "[Errno 28] ...: 'path'"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# -- reader ------------------------------------------------------------------------------------
def read_state(state_dir: Path) -> dict[str, Any]:
    """The state `write_state` wrote, with its tensors on the CPU; `RunFolderError` otherwise."""
    state_dir = Path(state_dir)
    refuse_legacy(state_dir)
    if not has_state(state_dir):
        raise RunFolderError(f"nothing to resume: {record_path(state_dir)} does not exist; run without --resume")
    current = (tensors_path(state_dir), record_path(state_dir))
    try:
        return _read_pair(*current)
    except _Mismatch as exc:
        backup = _previous(state_dir)
        if all(path.is_file() for path in backup):
            with contextlib.suppress(_Mismatch):
                return _read_pair(*backup)
        raise RunFolderError(f"{exc.path}: damaged resume state ({exc.reason}); start over with --overwrite") from None


class _Mismatch(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


def _read_pair(tensor_file: Path, record_file: Path) -> dict[str, Any]:
    try:
        record = read_json(record_file, max_bytes=MAX_RECORD_BYTES)
    except DocumentError as exc:
        raise _Mismatch(record_file, exc.reason) from None
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise _Mismatch(record_file, f"format {found!r}, expected {STATE_FORMAT!r}")
    if not isinstance(record.get("state"), dict):
        raise _Mismatch(record_file, 'incomplete (no "state" object)')
    try:
        with safe_open(str(tensor_file), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("save_id") != record.get("save_id"):
                raise _Mismatch(tensor_file, f"its tensors do not belong to {record_file.name} (written by another save)")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, SafetensorError) as exc:
        raise _Mismatch(tensor_file, _reason(exc)) from None
    try:
        return _decode(record["state"], tensors)
    except (KeyError, TypeError) as exc:
        raise _Mismatch(record_file, f"incomplete ({_reason(exc)})") from None


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            name = value[_TENSOR_REF]
            if name not in tensors:
                raise KeyError(f"tensor {name!r} is missing")
            return tensors[name]
        return {key: _decode(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    return value


def _previous(state_dir: Path) -> tuple[Path, Path]:
    return Path(state_dir) / f"{_PREVIOUS}.safetensors", Path(state_dir) / f"{_PREVIOUS}.json"
