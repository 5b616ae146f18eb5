"""Reading weight files without running code, and loading them strictly: the one owner of both.

Weights are read with safetensors, or `torch.load(weights_only=True)` for pickles, so a
downloaded file can never run code. That restricted unpickler could itself be escaped before
torch 2.6 (CVE-2025-32434), so older torch versions read safetensors only. A checkpoint that
does not fit its architecture is an error listing the keys that differ, never a silent partial
load. Every backbone family (timm ViTs, Prithvi, Galileo) reads through here; this module
imports nothing else of cegate's but its errors, so any of them may use it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from cegate_cli.errors import InputError

_SHOWN_KEYS_PER_GROUP = 4


def read_weights(path: Path) -> dict[str, Any]:
    """Tensors from a .safetensors file, or a pickle restricted to tensors and plain containers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise InputError(f"weights file '{path}' is not a readable safetensors file: {exc}") from None
    if not pickle_loading_is_safe(torch.__version__):
        raise InputError(
            f"weights file '{path}' is a pickle, and torch {torch.__version__} cannot read pickles safely "
            "(CVE-2025-32434); upgrade torch to 2.6 or newer, or use the backbone's .safetensors weights"
        )
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # files from the legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        raise InputError(
            f"weights file '{path}' could not be read as tensors ({str(exc).splitlines()[0]}); cegate only loads "
            "checkpoints that hold tensors, never pickled code"
        ) from None
    if not isinstance(loaded, dict):
        raise InputError(f"weights file '{path}' holds a {type(loaded).__name__}, not a dict of tensors")
    return loaded


def pickle_loading_is_safe(version: str) -> bool:
    """True for torch 2.6 and newer, whose `weights_only=True` unpickler cannot be escaped."""
    match = re.match(r"(\d+)\.(\d+)", str(version))
    return match is not None and (int(match[1]), int(match[2])) >= (2, 6)


def load_state_strict(vit: torch.nn.Module, state: dict[str, torch.Tensor], weights_path: Path | str, architecture: str) -> None:
    """Load all of `state` into `vit` or raise an InputError naming the keys that differ."""
    own = vit.state_dict()
    groups = {
        "wrong shape": [
            f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}" for key, value in state.items() if key in own and own[key].shape != value.shape
        ],
        "missing": [key for key in own if key not in state],
        "unexpected": [key for key in state if key not in own],
    }
    if any(groups.values()):
        raise InputError(f"weights '{weights_path}' do not fit architecture {architecture!r}: {describe_key_problems(groups)}")
    vit.load_state_dict(state, strict=True)


def describe_key_problems(groups: dict[str, list[str]], shown: int = _SHOWN_KEYS_PER_GROUP) -> str:
    """'missing (12): a, b, c, d, ...; unexpected (1): e' - every kind of problem stays visible."""
    parts = []
    for label, keys in groups.items():
        if keys:
            more = ", ..." if len(keys) > shown else ""
            parts.append(f"{label} ({len(keys)}): {', '.join(keys[:shown])}{more}")
    return "; ".join(parts)
