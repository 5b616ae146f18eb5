"""The embedded `tiny` backbone: a small ViT that needs no download.

It exists so that tests and `cegate demo` run offline. When the package ships pretrained weights
(`cegate_cli/weights/tiny.safetensors`) they are loaded; otherwise the weights are a fixed-seed
random initialisation, which is said plainly wherever the backbone is described.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.backbone.embedded import TINY_WEIGHTS
from cegate_cli.backbone.vit import PretrainedViT

TINY_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")
TINY_ARCHITECTURE = "cegate_tiny_vit_patch8"
TINY_INIT_SEED = 20240607


def tiny_vit_args() -> dict[str, object]:
    """Constructor arguments; recorded so the architecture is reproducible from run.json alone."""
    return dict(
        img_size=64,
        patch_size=8,
        in_chans=len(TINY_BANDS),
        num_classes=0,
        embed_dim=96,
        depth=6,
        num_heads=3,
        mlp_ratio=4.0,
        dynamic_img_size=True,
        global_pool="",
    )


def build_tiny_vit(weights: Path | None = None) -> PretrainedViT:
    """Build the tiny ViT; load `weights` (or the shipped file) when present."""
    saved_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_INIT_SEED)  # identical random init everywhere, without touching the caller's RNG
    try:
        vit = VisionTransformer(**tiny_vit_args())  # type: ignore[arg-type]
    finally:
        torch.random.set_rng_state(saved_state)
    path = weights if weights is not None else (TINY_WEIGHTS if TINY_WEIGHTS.is_file() else None)
    if path is not None:
        from safetensors.torch import load_file

        vit.load_state_dict(load_file(str(path)), strict=True)
    return PretrainedViT(vit=vit, band_names=TINY_BANDS, architecture=TINY_ARCHITECTURE)
