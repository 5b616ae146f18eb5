"""Everything `adapt` may be told, with the library's defaults: what `cegate adapt` fills from its flags.

Kept apart from `cegate_cli.pipelines.adapt` (which loads torch) so the command line can show these
defaults in `--help` without loading the model stack; the training, toolbox, self-training and
Galileo settings it holds are torch-free for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cegate_cli.backbone.galileo_options import GalileoOptions
from cegate_cli.data.classes import DEFAULT_IGNORE_INDEX, MAX_IGNORE_INDEX
from cegate_cli.errors import InputError
from cegate_cli.infra.option_fields import option
from cegate_cli.infra.shared_help import OFFLINE_HELP, REVISION_HELP, TOKEN_HELP
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.toolbox.config import ToolboxConfig
from cegate_cli.toolbox.kinds import default_kind_names, kind_names
from cegate_cli.toolbox.module_key import ModuleKey

_BACKBONE_HELP = (
    "Backbone: hf-hub:ORG/NAME or hf-hub:ORG/NAME/FOLDER for a model in a repo's folder (optionally @REVISION), a local folder, or an alias (dinov2-small|base|large, "
    "prithvi-eo-2-300m|600m|tiny, galileo-nano (embedded)|tiny|base, clay-v1, tiny). "
    "Not with --from."
)

_MODULES_HELP = f"Module kinds to choose from: {', '.join(kind_names())} (comma-separated), or all: the default toolbox ({', '.join(default_kind_names())})."


@dataclass(frozen=True)
class AdaptOptions:
    source: Path | None = option(help="Labeled folder: images/ and masks/ with matching names (+ classes.yaml). Not with --from.", flag="SOURCE")
    """Labeled folder; None when continuing an earlier run (`from_run`) on the target only."""
    out: Path = option(help="Run folder to write.", flag="--out")
    backbone: str = option("galileo-nano", help=_BACKBONE_HELP, flag="--backbone")
    """Embedded, so it runs offline, and the only real foundation model shipped (Sentinel-2 bands,
    SAR, NDVI, pixel size and month by design). On aerial RGB(N) imagery the embedded tiny ViT
    did as well in less time, above the per-pixel classifier on every class
    (docs/benchmarks-real.md), so the docs point those users to `--backbone tiny`. DINOv2 and
    Prithvi need the Hub."""
    revision: str | None = option(None, help=REVISION_HELP, flag="--revision")
    token: str | None = option(None, help=TOKEN_HELP, flag="--token")
    offline: bool | None = option(None, help=OFFLINE_HELP, flag="--offline")
    bands: str | None = option(
        None,
        help="Bands to use, in order: 1-based indexes (1,2,3), names (red,green,blue,nir), or names given to unnamed bands (red=1,green=2,blue=3,nir=4).",
        flag="--bands",
    )
    classes_file: Path | None = option(None, help="classes.yaml (default: SOURCE/classes.yaml if present).", flag="--classes")
    ignore_index: int | None = option(None, help=f"Mask value meaning 'no label' (default {DEFAULT_IGNORE_INDEX}).", flag="--ignore-index")
    align: bool = option(False, help="Warp masks onto their image's grid (nearest) when grids differ.", flag="--align")
    kinds: tuple[str, ...] = option(ToolboxConfig().kinds, help=_MODULES_HELP, flag="--modules")
    """The kinds selection chooses from (default: the default toolbox's, `--modules all`)."""
    only_modules: tuple[ModuleKey, ...] | None = None
    """Restrict the candidates to these (kind, block) modules (None: every kind of `kinds` in every
    block). With `train.selection="all"` exactly these train: the single-module runs of the
    oracle study (`benchmarks/bench_real.py --oracle`)."""
    toolbox: ToolboxConfig = field(default_factory=ToolboxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    overwrite: bool = option(False, help="Replace an existing run folder.", flag="--overwrite")
    resume: bool = option(False, help="Continue an interrupted run in --out with the same options.", flag="--resume")
    target: Path | None = option(None, help="Unlabeled target folder (images only): self-train on it.", flag="--target")
    """Unlabeled target folder: self-training (with `source`: DACS; with `from_run`: target only)."""
    from_run: Path | None = option(None, help="Continue this finished run on --target without any labels (no SOURCE).", flag="--from")
    """A finished run to continue on `target` (backbone, bands, classes, toolbox come from it)."""
    self_training: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    galileo: GalileoOptions = field(default_factory=GalileoOptions)
    """How Galileo backbones are fed (patch size, month, normalisation); ignored by ViTs."""
    saved_config: dict[str, Any] | None = None
    """The command line's options (name -> value, defaults included), written to RUN/config.yaml
    when the run starts, so `cegate adapt --config RUN/config.yaml` re-makes it; None: no file."""

    def __post_init__(self) -> None:
        # The one default that depends on another part of the options (the run's length) is
        # filled in here, so run.json records the value the run used. `dataclasses.replace`
        # keeps it; give self_training with stats_every=None to derive it for a new length.
        object.__setattr__(self, "self_training", self.self_training.for_steps(self.train.steps))

    def check(self) -> str:
        """The mode, or a one-line error for a combination or a value that means nothing.

        Runs first in `adapt`, before any folder is scanned, downloaded or written, so a typo in a
        flag never leaves a half-made run folder behind; torch-free, so the command line answers
        it before the model stack loads.
        """
        self.train.check()
        self.toolbox.check()
        for family in self.family_options.values():  # a typo is one even where that family is not used
            family.check()
        if self.resume and self.overwrite:
            raise InputError(
                f"--resume and --overwrite together: --resume continues the interrupted run in {self.out}, "
                "--overwrite replaces it with a new one; give one of them"
            )
        if self.ignore_index is not None and not 0 <= self.ignore_index <= MAX_IGNORE_INDEX:
            raise InputError(
                f"--ignore-index {self.ignore_index}: must be between 0 and {MAX_IGNORE_INDEX} (class ids are 0-254 and "
                "predicted masks are one byte per pixel); mark unlabeled pixels with one such value, or declare the masks' nodata value"
            )
        if self.from_run is not None:
            if self.source is not None:
                raise InputError(
                    "--from continues an earlier run on the unlabeled target only; give either a labeled SOURCE "
                    "folder (with --target for source+target self-training) or --from RUN, not both"
                )
            if self.target is None:
                raise InputError("--from RUN needs --target TARGET: the unlabeled folder to continue training on")
        elif self.source is None:
            raise InputError("give a labeled SOURCE folder, or --from RUN --target TARGET to continue a run on unlabeled images")
        if self.target is not None:
            self.self_training.check()
        return self.mode

    @property
    def family_options(self) -> dict[str, Any]:
        """The options each backbone family is given (by family name); a family not named gets None."""
        return {"galileo": self.galileo}

    @property
    def mode(self) -> str:
        if self.from_run is not None:
            return "target"
        return "supervised" if self.target is None else "source+target"
