"""Backbone spec -> local files, through the Hugging Face Hub client and its standard cache.

A spec is one of
- `hf-hub:ORG/NAME[/FOLDER][@REVISION]`: a model repo, or a model's folder inside one (Galileo's
  repo keeps one model per folder);
- a local folder holding config.json and the weights (or a checkpoint a family knows by name);
- a short name: an alias of a Hub repo (`dinov2-small`, `prithvi-eo-2-300m`, `galileo-tiny`, ...)
  or a backbone shipped in the package (`tiny`, `galileo-nano`).

What a model folder holds is its family's business (backbone/*_family.py): the families name
their aliases and embedded backbones, recognise their config.json and pick their weights file
among the folder's files; a family whose authors publish a checkpoint alone (Clay) names that
file instead (`bare_weights`), and a folder or repo without config.json is read by it. This
module is the generic part: spec forms, the Hub's files through `RepoFiles` (`HubFiles` for a
repo at a fixed commit, `FolderFiles` for a local folder), the resolved commit and the weights'
sha256.

All downloads go through `huggingface_hub.hf_hub_download`, so the cache is the one every other
Hub tool shares (HF_HOME / HF_HUB_CACHE), HF_TOKEN and `hf auth login` work, and a file is never
fetched twice. The result records the commit the files came from and the weights' sha256, so a
run can say exactly which weights it adapted. Hub errors become one `CegateError` each, with what
to do next (accept a licence, set a token, `cegate pull` while online): see hub_errors.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

from cegate_cli.backbone.family import BackboneFamily
from cegate_cli.backbone.hub_errors import HUB_PREFIX, HubRequest, hub_errors, offline_error
from cegate_cli.backbone.registry import (
    bare_weight_families,
    embedded_family,
    family_for_config,
    find_alias,
    known_specs,
)
from cegate_cli.backbone.source import CONFIG_NAME, BackboneSource, file_sha256, read_backbone_config
from cegate_cli.errors import BackboneNotFoundError, InputError, OfflineNotCachedError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_SUBFOLDER = re.compile(r"^[\w.-]+(/[\w.-]+)*$")
_TRUE_VALUES = {"1", "on", "yes", "true"}


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
    shipped = embedded_family(spec)
    parsed = None if shipped is not None else _parse_spec(spec, revision)
    if parsed is None or isinstance(parsed, Path):
        if revision:
            raise InputError(f"--revision only applies to Hub backbones; '{spec}' is {'embedded' if parsed is None else 'a local folder'}")
        if shipped is not None:
            return shipped.embedded_source(spec)
        assert parsed is not None
        return _local_source(spec, parsed)
    repo_id, repo_revision, family, subfolder = parsed
    request = HubRequest(
        spec=spec,
        repo_id=repo_id,
        subfolder=subfolder,
        revision=repo_revision,
        token=token,
        offline=_offline_mode() if offline is None else offline,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    return _hub_source(request, family)


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


def alias_help() -> str:
    """One line listing the accepted spec forms, for error messages and `--help`."""
    return f"known backbones: {', '.join(known_specs())}; or hf-hub:ORG/NAME[/FOLDER][@REVISION]; or a local folder"


# ---------------------------------------------------------------------------------- spec forms


def _parse_spec(spec: str, revision: str | None) -> Path | tuple[str, str | None, BackboneFamily | None, str | None]:
    """A local folder, or (repo_id, revision, the family an alias names, subfolder) for a Hub repo."""
    if spec.startswith(HUB_PREFIX):
        body = spec[len(HUB_PREFIX) :]
        path, _, spec_revision = body.partition("@")
        parts = path.split("/")
        repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:]) or None
        if not _REPO_ID.match(repo_id) or (subfolder is not None and not _SUBFOLDER.match(subfolder)):
            raise InputError(f"'{spec}' is not a Hub repo name; write hf-hub:ORG/NAME[/FOLDER][@REVISION]")
        return repo_id, revision or spec_revision or None, None, subfolder
    found = find_alias(spec)
    if found is not None:
        family, alias = found
        return alias.repo_id, revision, family, alias.subfolder
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


# ------------------------------------------------------------------------------- local folders


@dataclass(frozen=True)
class FolderFiles:
    """`RepoFiles` of a model in a local folder."""

    folder: Path
    repo_id: None = None

    @property
    def where(self) -> str:
        return str(self.folder)

    def first_of(self, names: Sequence[str]) -> Path:
        found = next((self.folder / name for name in names if (self.folder / name).is_file()), None)
        if found is None:
            raise BackboneNotFoundError(f"backbone folder '{self.folder}' has no weights: expected {' or '.join(names)}")
        return found

    def get(self, name: str) -> Path:
        path = self.folder / name
        if not path.is_file():
            raise BackboneNotFoundError(f"backbone folder '{self.folder}' has no {name}")
        return path

    def listed(self, suffix: str) -> list[str]:
        return sorted(p.name for p in self.folder.glob(f"*{suffix}") if p.is_file())


def _local_source(spec: str, folder: Path) -> BackboneSource:
    folder = folder.resolve()
    config = folder / CONFIG_NAME
    if not config.is_file():
        return _bare_local_source(spec, folder)
    family = family_for_config(read_backbone_config(config), spec)
    weights = family.weights_file(FolderFiles(folder), spec)
    return BackboneSource(
        spec=spec,
        kind=family.name,
        repo_id=None,
        revision=None,
        local_dir=folder,
        config_path=config,
        weights_path=weights,
        weights_sha256=file_sha256(weights),
    )


def _bare_local_source(spec: str, folder: Path) -> BackboneSource:
    """A folder without config.json: the family that knows one of its files by name (`bare_weights`)."""
    for family in bare_weight_families():
        weights = next((folder / name for name in family.bare_weights if (folder / name).is_file()), None)
        if weights is not None:
            return BackboneSource(
                spec=spec,
                kind=family.name,
                repo_id=None,
                revision=None,
                local_dir=folder,
                config_path=None,
                weights_path=weights,
                weights_sha256=file_sha256(weights),
            )
    named = [name for family in bare_weight_families() for name in family.bare_weights]
    alone = f", or a checkpoint cegate knows by name ({', '.join(named)})" if named else ""
    raise BackboneNotFoundError(f"backbone folder '{folder}' has no {CONFIG_NAME}; it needs config.json and the weights{alone}")


# ----------------------------------------------------------------------------------- Hub repos


@dataclass(frozen=True)
class HubFiles:
    """`RepoFiles` of a model in a Hub repo, every file from one commit (`snapshot`: the model's
    folder in the cache, where an offline listing looks)."""

    request: HubRequest
    commit: str | None
    snapshot: Path

    @property
    def repo_id(self) -> str:
        return self.request.repo_id

    @property
    def where(self) -> str:
        return f"{HUB_PREFIX}{self.request.repo_id}@{self.commit}"

    def first_of(self, names: Sequence[str]) -> Path:
        return _download_first(self.request, tuple(self.request.in_repo(n) for n in names), self.commit)

    def get(self, name: str) -> Path:
        return _download(self.request, self.request.in_repo(name), self.commit)

    def listed(self, suffix: str) -> list[str]:
        request = self.request
        if request.offline:
            names = sorted(p.name for p in self.snapshot.glob(f"*{suffix}"))
            if not names:
                raise offline_error(request)
            return names
        with hub_errors(request, None, self.commit):
            info = HfApi(token=request.token).model_info(request.repo_id, revision=self.commit, token=request.token)
        prefix = f"{request.subfolder}/" if request.subfolder else ""
        inside = (s.rfilename[len(prefix) :] for s in (info.siblings or []) if s.rfilename.startswith(prefix))
        return sorted(name for name in inside if "/" not in name and name.endswith(suffix))


def _hub_source(request: HubRequest, family: BackboneFamily | None) -> BackboneSource:
    if family is not None and family.bare_weights:
        return _bare_hub_source(request, [family])
    config_name = request.in_repo(CONFIG_NAME)
    with hub_errors(request, config_name, request.revision):
        try:
            config_path: Path | None = _fetch(request, config_name, request.revision)
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            # No config.json (or, offline, none cached): a checkpoint published alone may still be known by name.
            not_cached = isinstance(exc, LocalEntryNotFoundError)
            if family is not None or not bare_weight_families() or (not_cached and not request.offline):
                raise
            config_path = None
    if config_path is None:
        try:
            return _bare_hub_source(request, bare_weight_families())
        except BackboneNotFoundError:
            named = ", ".join(name for f in bare_weight_families() for name in f.bare_weights)
            raise BackboneNotFoundError(
                f"backbone {request.shown} has no file '{config_name}' at revision {request.revision or 'main'}, "
                f"nor a checkpoint cegate knows by name ({named})"
            ) from None
    snapshot = config_path.parent
    for _ in (request.subfolder or "").split("/") if request.subfolder else ():
        snapshot = snapshot.parent  # the snapshot root, named by its commit
    commit = snapshot.name if _COMMIT_SHA.match(snapshot.name) else _commit_from_api(request)
    if family is None:
        family = family_for_config(read_backbone_config(config_path), request.spec)
    # Every later file comes from the commit config.json came from, even if the branch moves meanwhile.
    weights_path = family.weights_file(HubFiles(request, commit, config_path.parent), request.spec)
    return BackboneSource(
        spec=request.spec,
        kind=family.name,
        repo_id=request.repo_id,
        revision=commit,
        local_dir=config_path.parent,
        config_path=config_path,
        weights_path=weights_path,
        weights_sha256=file_sha256(weights_path),
    )


def _bare_hub_source(request: HubRequest, families: list[BackboneFamily]) -> BackboneSource:
    """A repo (or folder of one) whose model is a checkpoint alone: the first of the families'
    `bare_weights` it holds; the commit is the one that file came from."""
    names = [(family, request.in_repo(name)) for family in families for name in family.bare_weights]
    weights_path = _download_first(request, tuple(name for _, name in names), request.revision)
    family, name = next((f, n) for f, n in names if weights_path.as_posix().endswith("/" + n))
    snapshot = weights_path
    for _ in name.split("/"):
        snapshot = snapshot.parent  # the snapshot root, named by its commit
    commit = snapshot.name if _COMMIT_SHA.match(snapshot.name) else _commit_from_api(request)
    return BackboneSource(
        spec=request.spec,
        kind=family.name,
        repo_id=request.repo_id,
        revision=commit,
        local_dir=snapshot / request.subfolder if request.subfolder else snapshot,
        config_path=None,
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
        raise BackboneNotFoundError(f"backbone {request.shown} has no weights at revision {revision or 'main'}: expected {' or '.join(filenames)}")


def _commit_from_api(request: HubRequest) -> str | None:
    """The commit sha when the cache layout did not show it (it always does in the standard cache)."""
    if request.offline:
        return None
    with hub_errors(request, None, request.revision):
        info = HfApi(token=request.token).model_info(request.repo_id, revision=request.revision, token=request.token)
    return info.sha
