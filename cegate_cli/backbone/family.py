"""What a backbone family supplies to the rest of cegate: the interface every family implements.

A family is one kind of pretrained model cegate adapts (timm ViTs, Prithvi checkpoints, Galileo,
the embedded `tiny`). It lives in its own module named `backbone/<name>_family.py`, which
registers a `BackboneFamily` subclass with `@register_family` (backbone/registry.py finds such
modules by their name, so a new family edits no other file). The family answers, in that module
and the modules it imports itself:

- its Hub layout: short names (`aliases`), specs shipped in the package (`embedded_specs`), how
  its config.json is recognised (`config_match`) and which file holds its weights
  (`weights_file`, through the generic `RepoFiles` that hub.py provides for a Hub repo or a
  local folder), or, for a model published without a config.json, its weights' names
  (`bare_weights`);
- loading (`load`): the files of a resolved `BackboneSource` -> a `Pretrained` model, which then
  builds the backbone for a run's bands (`Pretrained.build`: band mapping included), settles the
  run's conditions from its training images (`Pretrained.fit_inputs`: pixel size, month, ...), and
  whose `BlockBackbone` takes each scene's own conditions while `predict` maps it
  (`BlockBackbone.scene_conditions`, fed a `SceneInfo`: pixel size, date, location);
- its section of run.json's backbone record (`record`, `read_record`, `describe`), written and
  read back only here.

This module and every `*_family` module import no torch at module level: the registry loads them
all to resolve a spec, which `cegate pull` and `inspect` do without the model stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from cegate_cli.backbone.band_adapt import BandMapping
    from cegate_cli.backbone.base import BlockBackbone
    from cegate_cli.backbone.source import BackboneSource
    from cegate_cli.data.stats import BandStats

NO_MATCH, GENERIC_MATCH, SPECIFIC_MATCH = 0, 1, 2
"""How well a config.json fits a family (`BackboneFamily.config_match`): a specific layout (a
Galileo encoder block, a Prithvi architecture) wins over a generic one (any timm architecture)."""


@dataclass(frozen=True)
class HubAlias:
    """A short name for a Hub repo whose layout is known in advance."""

    repo_id: str
    description: str
    subfolder: str | None = None
    """The model's folder inside the repo (Galileo keeps one model per folder)."""


class RepoFiles(Protocol):
    """The files of one model, in a Hub repo at a fixed commit or in a local folder (hub.py makes
    both); a family's `weights_file` asks it for what its layout holds."""

    where: str
    """The place, as messages name it: the folder, or hf-hub:ORG/NAME@COMMIT."""
    repo_id: str | None
    """The Hub repo, None for a local folder."""

    def first_of(self, names: Sequence[str]) -> Path:
        """The first of these weight files the model has (downloaded if needed); none is one clear error."""
        ...

    def get(self, name: str) -> Path:
        """The file `name` of the model's folder (downloaded if needed)."""
        ...

    def listed(self, suffix: str) -> list[str]:
        """Names of the model folder's files that end with `suffix`, sorted."""
        ...


class FamilyInputs(Protocol):
    """How a run feeds its backbone beyond the pixels (Galileo: patch size, pixel size, month,
    normalisation), settled once at `adapt` from the training images and stored in run.json."""

    @property
    def own_statistics(self) -> bool:
        """Whether the run's own band statistics normalise the inputs, so another folder's (a
        target's) can take their place; False where the family keeps its pretraining statistics."""
        ...


class FamilyRecord(Protocol):
    """A family's section of run.json's backbone record: the inputs `predict` feeds the same way,
    and what reports show about them."""

    @property
    def inputs(self) -> FamilyInputs: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FittedInputs:
    """What `Pretrained.fit_inputs` settles for a run: the family's inputs (None: it takes none),
    the band statistics to normalise with (the run's own, or the family's pretraining ones),
    warnings for the user, and notes (advice on a healthy run)."""

    inputs: Any
    stats: BandStats
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Pretrained(Protocol):
    """A family's pretrained model as loaded from its files, before it meets a run's bands."""

    architecture: str
    """The name run.json and `inspect` show (a timm architecture, `galileo-nano`, ...)."""

    @property
    def band_names(self) -> tuple[str, ...] | None:
        """The canonical names (`cegate_cli.data.bands`) of the bands it was pretrained on, in order;
        None where its files do not say."""
        ...

    @property
    def embed_dim(self) -> int: ...

    def patch_size(self, options: Any) -> int:
        """Pixels per patch side a run gets with these family options (None: the defaults)."""
        ...

    def check_run(self, bands: Sequence[str], options: Any) -> None:
        """Refuse a band choice or family options this model cannot take, before any pixel is read."""
        ...

    def fit_inputs(self, options: Any, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        """The run's inputs, settled from its training images (paths) and band statistics."""
        ...

    def build(self, bands: Sequence[str], stats: BandStats | None, inputs: Any) -> tuple[BlockBackbone, BandMapping]:
        """The backbone for these bands fed with `inputs` (None: the family's defaults), and which
        pretrained band each of the run's bands takes."""
        ...

    def pretrained_backbone(self) -> BlockBackbone:
        """The backbone as pretrained, fed every band it knows (what `inspect --backbone` counts)."""
        ...


def normalizes_with_own_statistics(inputs: FamilyInputs | None) -> bool:
    """Whether a run's own band statistics normalise its inputs (see `FamilyInputs.own_statistics`);
    a family without inputs always normalises with the run's own."""
    return inputs is None or inputs.own_statistics


class BackboneFamily:
    """One family of backbones: subclass it in `backbone/<name>_family.py` and decorate the class
    with `@register_family`. The defaults describe a family with no aliases, nothing embedded, no
    run.json section of its own, and bands without a pretrained counterpart started from the mean.
    """

    name: ClassVar[str]
    """Recorded in run.json as the backbone source's `kind`: never rename a released family."""
    aliases: ClassVar[Mapping[str, HubAlias]] = {}
    embedded_specs: ClassVar[tuple[str, ...]] = ()
    """Specs that need no download: `embedded_source` says where their files lie."""
    layout: ClassVar[str] = ""
    """The config.json this family recognises, in a few words, for the message when none does."""
    record_key: ClassVar[str | None] = None
    """The key of the family's section in run.json's backbone record, None: no section."""
    unmatched_band: ClassVar[str] = "mean"
    """What a run's band without a pretrained counterpart becomes, as `inspect` says it."""
    bare_weights: ClassVar[tuple[str, ...]] = ()
    """Weight files (paths inside the model's folder or repo, tried in order) that make a folder
    this family's without a config.json, for authors who publish a checkpoint alone (Clay): hub.py
    then resolves the spec by these files, and `load` gets a source whose `config_path` is None."""

    def embedded_source(self, spec: str) -> BackboneSource:
        raise NotImplementedError(f"backbone family {self.name!r} ships no backbone")

    def config_match(self, config: dict[str, Any]) -> int:
        """How well a model folder's config.json fits this family: NO_MATCH, GENERIC_MATCH or SPECIFIC_MATCH."""
        return NO_MATCH

    def weights_file(self, files: RepoFiles, spec: str) -> Path:
        """The weights among the model's files (the config.json named this family)."""
        raise NotImplementedError(f"backbone family {self.name!r} reads no model folders")

    def load(self, source: BackboneSource) -> Pretrained:
        """The pretrained model the files of `source` hold, weights loaded."""
        raise NotImplementedError

    def record(self, backbone: BlockBackbone, inputs: Any) -> FamilyRecord | None:
        """The family's section of run.json for a built backbone fed with `inputs`."""
        return None

    def read_record(self, data: Any) -> FamilyRecord:
        """The family's section as `record` wrote it; a damaged one is a `FieldTypeError` naming the field."""
        raise NotImplementedError(f"backbone family {self.name!r} writes no section of its own")

    def describe(self, record: FamilyRecord) -> list[str]:
        """Lines for `inspect` about the section (label, ten columns, text)."""
        return []
