"""What every backbone loader hands over: a timm ViT with its pretrained weights and band names."""

from __future__ import annotations

from dataclasses import dataclass

from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer


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
