"""A resolved backbone: where its files are on this machine and exactly which version they are.

hub.py makes a `BackboneSource` from a spec; the family named by its `kind` loads it; run.json
records it so `predict` finds the same files again. Torch-free, like the registry it checks with.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cegate_cli.backbone.registry import list_families
from cegate_cli.errors import DocumentError, InputError
from cegate_cli.infra.documents import read_json

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's files are on this machine and exactly which version they are.

    `kind` is the name of the family that reads them (backbone/registry.py). `revision` is the
    resolved commit sha for Hub repos (never a branch name), so
    `resolve_backbone(source.spec, revision=source.revision)` finds the same files again;
    `weights_sha256` lets a later command check it got the same bytes.
    """

    spec: str
    kind: str
    repo_id: str | None
    revision: str | None
    local_dir: Path | None
    config_path: Path | None
    weights_path: Path | None
    weights_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("local_dir", "config_path", "weights_path"):
            data[key] = None if data[key] is None else str(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneSource:
        try:
            values = {key: data[key] for key in cls.__dataclass_fields__}
        except KeyError as exc:
            raise InputError(f"backbone record is missing the field {exc.args[0]!r}: {data!r}") from None
        for key in ("local_dir", "config_path", "weights_path"):
            values[key] = None if values[key] is None else Path(values[key])
        if values["kind"] not in list_families():
            raise InputError(f"backbone record has an unknown kind {values['kind']!r}")
        return cls(**values)

    def files(self) -> tuple[Path, Path]:
        """(config, weights); a source without them (resolved elsewhere, then moved) is an InputError."""
        if self.config_path is None or self.weights_path is None:
            raise InputError(f"backbone '{self.spec}' has no config or weights file recorded; resolve it again")
        return self.config_path, self.weights_path


def read_backbone_config(path: Path) -> dict[str, Any]:
    """A backbone's config.json as a dict; unreadable or non-object JSON is the user's InputError."""
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise InputError(f"backbone config {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"backbone config '{path}' must hold a JSON object, not {type(data).__name__}")
    return data


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB pieces so large checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
