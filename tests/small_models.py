"""Small timm models the backbone and toolbox tests build in milliseconds (one definition for both)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer


def small_vit(depth: int = 4, **overrides: object) -> VisionTransformer:
    """A seeded 32-dim ViT with patch 8 and dynamic image size; `overrides` go to timm as given."""
    torch.manual_seed(3)
    args: dict[str, object] = dict(
        img_size=32,
        patch_size=8,
        in_chans=3,
        num_classes=0,
        embed_dim=32,
        depth=depth,
        num_heads=2,
        dynamic_img_size=True,
        global_pool="",
    )
    args.update(overrides)
    return VisionTransformer(**args)  # type: ignore[arg-type]
