"""The embedded `tiny` ViT: shipped in the package (cegate_cli/weights/tiny.safetensors), so tests
and `cegate demo` run offline; built by backbone/tiny.py. Recorded in run.json as kind "embedded".
"""

from __future__ import annotations

from cegate_cli.backbone.embedded import TINY_WEIGHTS
from cegate_cli.backbone.family import BackboneFamily, Pretrained
from cegate_cli.backbone.registry import register_family
from cegate_cli.backbone.source import BackboneSource, file_sha256

SPEC = "tiny"


@register_family
class TinyFamily(BackboneFamily):
    name = "embedded"
    embedded_specs = (SPEC,)

    def embedded_source(self, spec: str) -> BackboneSource:
        weights = TINY_WEIGHTS if TINY_WEIGHTS.is_file() else None
        return BackboneSource(
            spec=SPEC,
            kind=self.name,
            repo_id=None,
            revision=None,
            local_dir=None if weights is None else weights.parent,
            config_path=None,
            weights_path=weights,
            weights_sha256=None if weights is None else file_sha256(weights),
        )

    def load(self, source: BackboneSource) -> Pretrained:
        from cegate_cli.backbone.tiny import build_tiny_vit

        return build_tiny_vit(source.weights_path)
