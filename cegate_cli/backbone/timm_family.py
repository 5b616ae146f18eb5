"""timm ViTs (`VisionTransformer`, `Eva`) from a timm-format repo or folder: config.json names the
architecture and its constructor arguments, model.safetensors (else pytorch_model.bin) holds the
weights. DINOv2 has aliases. The model is built and loaded by backbone/load.py; the run's bands
are fitted into its patch embedding by backbone/band_adapt.py (`PretrainedViT` in backbone/vit.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cegate_cli.backbone.family import GENERIC_MATCH, NO_MATCH, BackboneFamily, HubAlias, Pretrained, RepoFiles
from cegate_cli.backbone.registry import register_family
from cegate_cli.backbone.source import BackboneSource

WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
"""timm's own order (timm/models/_hub.py): safetensors first, the pickle only as a fallback."""


@register_family
class TimmFamily(BackboneFamily):
    name = "timm"
    aliases = {
        "dinov2-small": HubAlias("timm/vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14, RGB, 22M parameters"),
        "dinov2-base": HubAlias("timm/vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14, RGB, 86M parameters"),
        "dinov2-large": HubAlias("timm/vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14, RGB, 304M parameters"),
    }
    layout = "an 'architecture' timm knows, with its model_args"

    def config_match(self, config: dict[str, Any]) -> int:
        """Any config that names an architecture: the layout every other family is more specific than."""
        return GENERIC_MATCH if str(config.get("architecture", "")) else NO_MATCH

    def weights_file(self, files: RepoFiles, spec: str) -> Path:
        return files.first_of(WEIGHT_NAMES)

    def load(self, source: BackboneSource) -> Pretrained:
        from cegate_cli.backbone.load import load_timm_vit

        return load_timm_vit(*source.files())
