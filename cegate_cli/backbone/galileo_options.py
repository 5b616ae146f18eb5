"""What a user may set for a Galileo backbone, and the defaults behind it, without loading torch.

Kept apart from `galileo_backbone` (which builds the model) so the command line can show these
defaults in `--help` and a Python caller gets the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from cegate_cli.errors import InputError

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

    patch_size: int | None = None
    month: int | None = None
    """0 = January; the CLI takes 1-12."""
    normalize: str = "auto"

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
