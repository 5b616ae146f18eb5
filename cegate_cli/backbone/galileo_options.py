"""What a user may set for a Galileo backbone, the defaults behind it, and how a run feeds it
(`GalileoInputs`, recorded in run.json as `GalileoRecord`), without loading torch.

Kept apart from `galileo_backbone` (which builds the model) so the command line can show these
defaults in `--help`, a Python caller gets the same ones, and `inspect` reads a run's record
without the model stack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cegate_cli.errors import InputError
from cegate_cli.infra.option_fields import option
from cegate_cli.infra.record_fields import FieldTypeError, record_fields

NORMALIZE_CHOICES = ("auto", "pretrained", "data")
DEFAULT_MONTH = 6
"""July (months count from 0 = January): mid-growing-season in the northern hemisphere, when most
aerial surveys (NAIP among them) fly; used when neither `--month` nor the imagery gives one."""
DEFAULT_PATCH_SIZE = 8
"""Galileo's largest (pretraining) patch: 16 x 16 tokens per group on a 128-pixel crop, which
keeps self-attention affordable on a CPU; smaller patches give finer maps at quadratic cost."""


@dataclass(frozen=True)
class GalileoOptions:
    """What a user may set for Galileo (`--patch-size`, `--month`, `--normalize`); None and
    "auto" mean: decide from the imagery (see `galileo_backbone.resolve_galileo_inputs`)."""

    patch_size: int | None = option(None, help="Galileo: pixels per patch side, 1-8 (smaller: finer maps, slower).", flag="--patch-size")
    month: int | None = option(
        None,
        help=f"Galileo: month of the imagery, 1-12 (default: from the files' date tags, else {DEFAULT_MONTH + 1}).",
        flag="--month",
    )
    """0 = January; the CLI takes 1-12."""
    normalize: str = option("auto", help="Galileo: auto, pretrained (Sentinel-2 reflectance statistics) or data (the run's own).", flag="--normalize")

    def check(self, max_patch_size: int | None = None) -> None:
        """Refuse values no Galileo run can use. Checked for every backbone (a typo is a typo even
        where Galileo is not used); `max_patch_size`, the loaded encoder's largest patch, once known."""
        if self.normalize not in NORMALIZE_CHOICES:
            raise InputError(f"--normalize {self.normalize!r}: choose {', '.join(NORMALIZE_CHOICES)}")
        if self.month is not None and not 0 <= self.month <= 11:
            raise InputError(f"--month {self.month + 1}: give a month from 1 (January) to 12 (December)")
        if self.patch_size is not None and self.patch_size < 1:
            raise InputError(f"--patch-size {self.patch_size}: must be at least 1")
        if self.patch_size is not None and max_patch_size is not None and self.patch_size > max_patch_size:
            raise InputError(
                f"--patch-size {self.patch_size}: Galileo takes patch sizes 1 to {max_patch_size} (its patch kernels are "
                f"{max_patch_size} px; a larger patch has no weights), e.g. {DEFAULT_PATCH_SIZE}"
            )


@dataclass(frozen=True)
class GalileoInputs:
    """How images are fed to Galileo; stored in run.json so `predict` feeds them the same way."""

    patch_size: int = DEFAULT_PATCH_SIZE
    gsd_m: float = 10.0
    month: int = DEFAULT_MONTH
    normalize: str = "data"
    """'pretrained': the authors' statistics (Sentinel-2 reflectance); 'data': the run's own."""
    month_from: str = "default"
    """Where `month` came from: 'option' (`--month`, which then holds for every scene `predict`
    maps too), 'imagery' (the files' date tags) or 'default' (July)."""

    @property
    def own_statistics(self) -> bool:
        """Under the authors' statistics the run keeps them whatever the imagery; under `data`
        another folder's statistics (a target's) may take the run's place."""
        return self.normalize == "data"

    def check(self, max_patch_size: int) -> None:
        if not 1 <= self.patch_size <= max_patch_size:
            raise InputError(f"--patch-size {self.patch_size}: Galileo takes patch sizes 1 to {max_patch_size}")
        if not 0 <= self.month <= 11:
            raise InputError(f"--month {self.month + 1}: give a month from 1 (January) to 12 (December)")
        if not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            raise InputError(f"ground sample distance {self.gsd_m} m: must be a positive number of metres")
        if self.normalize not in ("pretrained", "data"):
            raise InputError(f"--normalize {self.normalize!r}: choose pretrained or data")
        if self.month_from not in ("option", "imagery", "default"):
            raise InputError(f"month source {self.month_from!r}: expected option, imagery or default")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GalileoInputs:
        """From run.json (other keys of the section are left to `GalileoRecord`); a value of the
        wrong type is a FieldTypeError naming it."""
        return cls(**record_fields(cls, data, section="backbone.galileo", unknown="drop"))


@dataclass(frozen=True)
class GroupFill:
    """One of Galileo's channel groups a run filled, and the run's bands that fill it."""

    group: str
    bands: tuple[str, ...]


@dataclass(frozen=True)
class GalileoRecord:
    """Galileo's section of run.json's backbone record: its inputs, and the groups the bands filled."""

    inputs: GalileoInputs
    groups: tuple[GroupFill, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.inputs.to_dict(), "groups": [{"group": g.group, "bands": list(g.bands)} for g in self.groups]}

    @classmethod
    def from_dict(cls, data: Any) -> GalileoRecord:
        if not isinstance(data, dict):
            raise FieldTypeError("backbone.galileo is not an object of fields")
        groups = data.get("groups") or []
        if not isinstance(groups, list):
            raise FieldTypeError("backbone.galileo.groups is not a list")
        return cls(
            GalileoInputs.from_dict(data),
            tuple(GroupFill(**record_fields(GroupFill, g, section="backbone.galileo.groups")) for g in groups),
        )
