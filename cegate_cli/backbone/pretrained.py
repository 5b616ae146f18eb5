"""What every backbone loader hands over: a model with its pretrained weights, and what it was
pretrained on (band names; Galileo: its normalisation statistics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

if TYPE_CHECKING:
    from cegate_cli.backbone.galileo import GalileoEncoder, PretrainedNormalization


@dataclass
class PretrainedViT:
    """A timm VisionTransformer (or Eva: separate q/k/v, rotary positions) built with `dynamic_img_size=True` and `num_classes=0`.

    `band_names` are the canonical names (see `cegate_cli.bands`) of the input channels the
    weights were trained on, in order, so band adaptation can copy kernels by name; `None` when
    the weights do not say (the channels are then matched by position only if counts agree).
    """

    vit: VisionTransformer | Eva
    band_names: tuple[str, ...] | None
    architecture: str


@dataclass
class PretrainedGalileo:
    """Galileo's encoder with its weights, and the statistics its pretraining data were scaled by
    (the same for every size: one pretraining set)."""

    encoder: "GalileoEncoder"
    normalization: "PretrainedNormalization"
    architecture: str

    @property
    def band_names(self) -> tuple[str, ...]:
        """Galileo's space-time bands (VV ... B12, NDVI): what a run's bands are matched to."""
        from cegate_cli.backbone.galileo import SPACE_TIME_BANDS

        return SPACE_TIME_BANDS


Pretrained = PretrainedViT | PretrainedGalileo
