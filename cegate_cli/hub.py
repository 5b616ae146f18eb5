"""Backbone spec -> local files, through the Hugging Face Hub client and its standard cache.

A spec is one of
- `hf-hub:ORG/NAME[@REVISION]`: a timm-format repo (config.json + model.safetensors, else
  pytorch_model.bin) or a Prithvi-format repo (config.json + a .pt checkpoint);
- a local folder with either layout;
- an alias (`dinov2-small`, `prithvi-eo-2-300m`, ... see `ALIASES`);
- `tiny`, `galileo-nano`: embedded in the package, nothing to download.
- Galileo repos (`nasaharvest/galileo`) hold one model per folder, `models/<size>/config.json` +
  `encoder.pt`; `hf-hub:ORG/NAME/FOLDER[@REVISION]` names such a folder, `galileo-tiny|base` are
  aliases for the authors' repo.

All downloads go through `huggingface_hub.hf_hub_download`, so the cache is the one every other
Hub tool shares (HF_HOME / HF_HUB_CACHE), HF_TOKEN and `hf auth login` work, and a file is never
fetched twice. The result records the commit the files came from and the weights' sha256, so a
run can say exactly which weights it adapted. Hub errors become one `CegateError` each, with what
to do next (accept a licence, set a token, `cegate pull` while online): see hub_errors.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

from cegate_cli.embedded import GALILEO_NANO_CONFIG, GALILEO_NANO_WEIGHTS, TINY_WEIGHTS
from cegate_cli.documents import read_json
from cegate_cli.errors import BackboneNotFoundError, DocumentError, InputError, OfflineNotCachedError
from cegate_cli.hub_errors import HUB_PREFIX, HubRequest, hub_errors, offline_error

BackboneKind = Literal["timm", "prithvi", "embedded", "galileo"]
KINDS_OF_BACKBONE: tuple[str, ...] = ("timm", "prithvi", "embedded", "galileo")

EMBEDDED_SPEC = "tiny"
GALILEO_NANO_SPEC = "galileo-nano"
GALILEO_REPO = "nasaharvest/galileo"
GALILEO_WEIGHT_NAMES = ("encoder.safetensors", "encoder.pt")
CONFIG_NAME = "config.json"
# timm's own order (timm/models/_hub.py): safetensors first, the pickle only as a fallback.
TIMM_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
PRITHVI_WEIGHT_SUFFIX = ".pt"


@dataclass(frozen=True)
class HubAlias:
    """A short name for a Hub repo whose layout is known in advance."""

    repo_id: str
    kind: BackboneKind
    description: str
    subfolder: str | None = None
    """The model's folder inside the repo (Galileo keeps one model per folder)."""


ALIASES: dict[str, HubAlias] = {
    "dinov2-small": HubAlias("timm/vit_small_patch14_dinov2.lvd142m", "timm", "DINOv2 ViT-S/14, RGB, 22M parameters"),
    "dinov2-base": HubAlias("timm/vit_base_patch14_dinov2.lvd142m", "timm", "DINOv2 ViT-B/14, RGB, 86M parameters"),
    "dinov2-large": HubAlias("timm/vit_large_patch14_dinov2.lvd142m", "timm", "DINOv2 ViT-L/14, RGB, 304M parameters"),
    "prithvi-eo-2-300m": HubAlias(
        "ibm-nasa-geospatial/Prithvi-EO-2.0-300M", "prithvi", "Prithvi-EO-2.0 ViT-L/16, 6 HLS bands, 300M parameters"
    ),
    "prithvi-eo-2-600m": HubAlias(
        "ibm-nasa-geospatial/Prithvi-EO-2.0-600M", "prithvi", "Prithvi-EO-2.0 ViT-H/14, 6 HLS bands, 600M parameters"
    ),
    "galileo-tiny": HubAlias(GALILEO_REPO, "galileo", "Galileo-tiny, Sentinel-1/2 channel groups, 5.3M parameters", "models/tiny"),
    "galileo-base": HubAlias(GALILEO_REPO, "galileo", "Galileo-base, Sentinel-1/2 channel groups, 85M parameters", "models/base"),
}

# Checkpoint names in the Prithvi-EO-2.0 repos (one .pt each); other Prithvi repos are listed.
PRITHVI_WEIGHT_FILES: dict[str, str] = {
    "ibm-nasa-geospatial/Prithvi-EO-2.0-300M": "Prithvi_EO_V2_300M.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL": "Prithvi_EO_V2_300M_TL.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-600M": "Prithvi_EO_V2_600M.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL": "Prithvi_EO_V2_600M_TL.pt",
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_SUBFOLDER = re.compile(r"^[\w.-]+(/[\w.-]+)*$")
_TRUE_VALUES = {"1", "on", "yes", "true"}


# --------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's files are on this machine and exactly which version they are.

    `revision` is the resolved commit sha for Hub repos (never a branch name), so
    `resolve_backbone(source.spec, revision=source.revision)` finds the same files again;
    `weights_sha256` lets a later command check it got the same bytes.
    """

    spec: str
    kind: BackboneKind
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
    def from_dict(cls, data: dict[str, Any]) -> "BackboneSource":
        try:
            values = {key: data[key] for key in cls.__dataclass_fields__}
        except KeyError as exc:
            raise InputError(f"backbone record is missing the field {exc.args[0]!r}: {data!r}") from None
        for key in ("local_dir", "config_path", "weights_path"):
            values[key] = None if values[key] is None else Path(values[key])
        if values["kind"] not in KINDS_OF_BACKBONE:
            raise InputError(f"backbone record has an unknown kind {values['kind']!r}")
        return cls(**values)


# ----------------------------------------------------------------------------------- public API


def resolve_backbone(
    spec: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> BackboneSource:
    """Find (downloading into the Hub cache if needed) the files of the backbone `spec` names.

    `revision` overrides an `@REVISION` in the spec. `token` defaults to what huggingface_hub
    finds itself (HF_TOKEN, `hf auth login`). `offline` defaults to HF_HUB_OFFLINE, read now
    rather than at import, and means: cache only.
    """
    spec = spec.strip()
    parsed = None if spec in (EMBEDDED_SPEC, GALILEO_NANO_SPEC) else _parse_spec(spec, revision)
    if parsed is None or isinstance(parsed, Path):
        if revision:
            raise InputError(f"--revision only applies to Hub backbones; '{spec}' is {'embedded' if parsed is None else 'a local folder'}")
        if parsed is None:
            return _embedded_source() if spec == EMBEDDED_SPEC else _embedded_galileo_source()
        return _local_source(spec, parsed)
    repo_id, repo_revision, alias, subfolder = parsed
    request = HubRequest(
        spec=spec,
        repo_id=repo_id,
        subfolder=subfolder,
        revision=repo_revision,
        token=token,
        offline=_offline_mode() if offline is None else offline,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    return _hub_source(request, alias)


def pull_backbone(
    spec: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> BackboneSource:
    """Download everything `spec` needs into the Hub cache (what `cegate pull` does).

    The same as `resolve_backbone`, but an offline setting is reported as the reason nothing can be
    downloaded, instead of suggesting the very command the user just ran.
    """
    try:
        return resolve_backbone(spec, revision=revision, token=token, cache_dir=cache_dir)
    except OfflineNotCachedError:
        raise OfflineNotCachedError(
            f"offline mode is on (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '1')}), so 'cegate pull' "
            f"cannot download '{spec}'; unset HF_HUB_OFFLINE and run it again"
        ) from None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB pieces so large checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def alias_help() -> str:
    """One line listing the accepted spec forms, for error messages and `--help`."""
    names = ", ".join([EMBEDDED_SPEC, GALILEO_NANO_SPEC, *ALIASES])
    return f"known backbones: {names}; or hf-hub:ORG/NAME[/FOLDER][@REVISION]; or a local folder"


# ---------------------------------------------------------------------------------- spec forms


def _parse_spec(spec: str, revision: str | None) -> Path | tuple[str, str | None, HubAlias | None, str | None]:
    """A local folder, or (repo_id, revision, alias, subfolder) for a Hub repo."""
    if spec.startswith(HUB_PREFIX):
        body = spec[len(HUB_PREFIX):]
        path, _, spec_revision = body.partition("@")
        parts = path.split("/")
        repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:]) or None
        if not _REPO_ID.match(repo_id) or (subfolder is not None and not _SUBFOLDER.match(subfolder)):
            raise InputError(f"'{spec}' is not a Hub repo name; write hf-hub:ORG/NAME[/FOLDER][@REVISION]")
        return repo_id, revision or spec_revision or None, None, subfolder
    alias = ALIASES.get(spec.lower())
    if alias is not None:
        return alias.repo_id, revision, alias, alias.subfolder
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise BackboneNotFoundError(f"backbone '{spec}' is a file; give the folder that holds config.json and the weights")
    if _REPO_ID.match(spec):
        raise InputError(f"'{spec}' is neither a folder nor a known backbone; for the Hub repo write hf-hub:{spec}. {alias_help()}")
    if os.sep in spec or spec.startswith((".", "~")):
        raise BackboneNotFoundError(f"backbone folder '{spec}' does not exist")
    raise InputError(f"unknown backbone '{spec}'; {alias_help()}")


def _offline_mode() -> bool:
    """HF_HUB_OFFLINE as it is now; huggingface_hub itself only reads it when first imported."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in _TRUE_VALUES
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _embedded_source() -> BackboneSource:
    weights = TINY_WEIGHTS if TINY_WEIGHTS.is_file() else None
    return BackboneSource(
        spec=EMBEDDED_SPEC,
        kind="embedded",
        repo_id=None,
        revision=None,
        local_dir=None if weights is None else weights.parent,
        config_path=None,
        weights_path=weights,
        weights_sha256=None if weights is None else file_sha256(weights),
    )


def _embedded_galileo_source() -> BackboneSource:
    """Galileo-nano as shipped in the package (the authors' weights converted to safetensors)."""
    return BackboneSource(
        spec=GALILEO_NANO_SPEC,
        kind="galileo",
        repo_id=None,
        revision=None,
        local_dir=GALILEO_NANO_WEIGHTS.parent,
        config_path=GALILEO_NANO_CONFIG,
        weights_path=GALILEO_NANO_WEIGHTS,
        weights_sha256=file_sha256(GALILEO_NANO_WEIGHTS),
    )


def _local_source(spec: str, folder: Path) -> BackboneSource:
    folder = folder.resolve()
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise BackboneNotFoundError(f"backbone folder '{folder}' has no {CONFIG_NAME}; it needs config.json and the weights")
    kind = _kind_from_config(read_backbone_config(config), spec)
    if kind in ("timm", "galileo"):
        names = TIMM_WEIGHT_NAMES if kind == "timm" else GALILEO_WEIGHT_NAMES
        weights = next((folder / name for name in names if (folder / name).is_file()), None)
        if weights is None:
            raise BackboneNotFoundError(f"backbone folder '{folder}' has no weights: expected {' or '.join(names)}")
    else:
        weights = folder / _pick_prithvi_checkpoint(sorted(p.name for p in folder.glob(f"*{PRITHVI_WEIGHT_SUFFIX}")), spec, str(folder))
    return BackboneSource(
        spec=spec,
        kind=kind,
        repo_id=None,
        revision=None,
        local_dir=folder,
        config_path=config,
        weights_path=weights,
        weights_sha256=file_sha256(weights),
    )


def read_backbone_config(path: Path) -> dict[str, Any]:
    """A backbone's config.json as a dict; unreadable or non-object JSON is the user's InputError."""
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise InputError(f"backbone config {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"backbone config '{path}' must hold a JSON object, not {type(data).__name__}")
    return data


def _kind_from_config(config: dict[str, Any], spec: str) -> BackboneKind:
    """Galileo's config.json holds `model.encoder`; Prithvi's names a `prithvi_*` architecture and a
    frame count; anything else is timm's."""
    if isinstance(config.get("model"), dict) and isinstance(config["model"].get("encoder"), dict):
        return "galileo"
    architecture = str(config.get("architecture", ""))
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else config
    if architecture.lower().startswith("prithvi") or "num_frames" in pretrained_cfg:
        return "prithvi"
    if not architecture:
        raise InputError(f"the config.json of '{spec}' names no 'architecture'; it is not a timm model repo")
    return "timm"


def _pick_prithvi_checkpoint(candidates: list[str], spec: str, where: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BackboneNotFoundError(f"backbone '{spec}' has no {PRITHVI_WEIGHT_SUFFIX} checkpoint in {where}")
    raise InputError(
        f"backbone '{spec}' has several checkpoints in {where} ({', '.join(candidates)}) and cegate cannot tell "
        "which to use; put config.json and the one you want in a folder of their own and give that folder"
    )


# ----------------------------------------------------------------------------------- Hub repos


def _hub_source(request: HubRequest, alias: HubAlias | None) -> BackboneSource:
    config_path = _download(request, request.in_repo(CONFIG_NAME), request.revision)
    snapshot = config_path.parent
    for _ in (request.subfolder or "").split("/") if request.subfolder else ():
        snapshot = snapshot.parent  # the snapshot root, named by its commit
    commit = snapshot.name if _COMMIT_SHA.match(snapshot.name) else _commit_from_api(request)
    kind = alias.kind if alias is not None else _kind_from_config(read_backbone_config(config_path), request.spec)
    # Every later file comes from the commit config.json came from, even if the branch moves meanwhile.
    if kind == "timm":
        weights_path = _download_first(request, tuple(request.in_repo(n) for n in TIMM_WEIGHT_NAMES), commit)
    elif kind == "galileo":
        weights_path = _download_first(request, tuple(request.in_repo(n) for n in GALILEO_WEIGHT_NAMES), commit)
    else:
        weights_path = _download(request, _prithvi_weight_name(request, commit, snapshot), commit)
    return BackboneSource(
        spec=request.spec,
        kind=kind,
        repo_id=request.repo_id,
        revision=commit,
        local_dir=config_path.parent,
        config_path=config_path,
        weights_path=weights_path,
        weights_sha256=file_sha256(weights_path),
    )


def _fetch(request: HubRequest, filename: str, revision: str | None) -> Path:
    """One file through the Hub cache; raises huggingface_hub's own exceptions."""
    return Path(
        hf_hub_download(
            repo_id=request.repo_id,
            filename=filename,
            revision=revision,
            token=request.token,
            cache_dir=request.cache_dir,
            local_files_only=request.offline,
        )
    )


def _download(request: HubRequest, filename: str, revision: str | None) -> Path:
    with hub_errors(request, filename, revision):
        return _fetch(request, filename, revision)


def _download_first(request: HubRequest, filenames: tuple[str, ...], revision: str | None) -> Path:
    """The first of `filenames` the repo has; offline or unreachable, the first one in the cache."""
    with hub_errors(request, filenames[0], revision):
        not_cached: LocalEntryNotFoundError | None = None
        for filename in filenames:
            try:
                return _fetch(request, filename, revision)
            except LocalEntryNotFoundError as exc:  # not cached and no answer: another name may be cached
                not_cached = not_cached or exc
            except EntryNotFoundError:  # the repo has no such file: try the next name
                continue
        if not_cached is not None:
            raise not_cached
        raise BackboneNotFoundError(
            f"backbone {request.shown} has no weights at revision {revision or 'main'}: "
            f"expected {' or '.join(filenames)}"
        )


def _prithvi_weight_name(request: HubRequest, commit: str, snapshot: Path) -> str:
    known = PRITHVI_WEIGHT_FILES.get(request.repo_id)
    if known is not None:
        return known
    if request.offline:
        names = sorted(p.name for p in snapshot.glob(f"*{PRITHVI_WEIGHT_SUFFIX}"))
        if not names:
            raise offline_error(request)
    else:
        with hub_errors(request, None, commit):
            info = HfApi(token=request.token).model_info(request.repo_id, revision=commit, token=request.token)
        names = sorted(
            s.rfilename for s in (info.siblings or []) if "/" not in s.rfilename and s.rfilename.endswith(PRITHVI_WEIGHT_SUFFIX)
        )
    return _pick_prithvi_checkpoint(names, request.spec, f"{HUB_PREFIX}{request.repo_id}@{commit}")


def _commit_from_api(request: HubRequest) -> str | None:
    """The commit sha when the cache layout did not show it (it always does in the standard cache)."""
    if request.offline:
        return None
    with hub_errors(request, None, request.revision):
        info = HfApi(token=request.token).model_info(request.repo_id, revision=request.revision, token=request.token)
    return info.sha


