"""Clay v1 (Clay Foundation, Apache-2.0): any bands by their wavelengths; pixel size, date and place.

The authors publish their Lightning checkpoint alone, without a config.json: the Hub repo
made-with-clay/Clay holds Clay v1.5 as `v1.5/clay-v1.5.ckpt` (the encoder under `model.encoder.`,
beside the decoder, teacher and projection of pretraining). The alias `clay-v1` names that repo;
`hf-hub:made-with-clay/Clay[@REVISION]`, and a local folder holding the checkpoint (or the
encoder's tensors alone as `clay-v1.5.safetensors`), are recognised by these file names
(`bare_weights`). The revision is resolved when the backbone is first pulled and recorded, as for
every alias (none is pinned in advance).

The encoder is backbone/clay.py (its size read from the checkpoint's shapes), the bands'
wavelengths and statistics backbone/clay_bands.py, the run's inputs backbone/clay_inputs.py and
the bridge to cegate's block loop backbone/clay_backbone.py. run.json's backbone record holds a
"clay" section: the platform, each band's wavelength, the encoder's dimensions, and the pixel
size, date and place the run was trained with, with where each came from.
"""

from __future__ import annotations

from typing import Any

from cegate_cli.backbone.clay_inputs import ClayInputs, ClayRecord, ClayShape
from cegate_cli.backbone.family import BackboneFamily, HubAlias, Pretrained
from cegate_cli.backbone.registry import register_family
from cegate_cli.backbone.source import BackboneSource
from cegate_cli.errors import InputError

REPO = "made-with-clay/Clay"
WEIGHT_NAMES = ("v1.5/clay-v1.5.ckpt", "clay-v1.5.ckpt", "clay-v1.5.safetensors", "clay-v1-base.ckpt")
"""Where Clay's weights lie: the Hub repo's v1.5 folder, a folder holding the checkpoint (or the
encoder's tensors alone), or the earlier v1.0 base checkpoint (same code and key names)."""


@register_family
class ClayFamily(BackboneFamily):
    name = "clay"
    aliases = {"clay-v1": HubAlias(REPO, "Clay v1.5, any bands by wavelength, pixel size, date and place, 311M parameters")}
    bare_weights = WEIGHT_NAMES
    record_key = "clay"
    unmatched_band = "refused"

    def load(self, source: BackboneSource) -> Pretrained:
        from cegate_cli.backbone.clay_backbone import load_pretrained_clay

        if source.weights_path is None:
            raise InputError(f"backbone '{source.spec}' has no weights file recorded; resolve it again")
        return load_pretrained_clay(source.weights_path)

    def record(self, backbone: Any, inputs: ClayInputs | None) -> ClayRecord | None:
        """The inputs the run feeds, and the encoder's dimensions."""
        if inputs is None:
            return None
        c = backbone.encoder.config
        return ClayRecord(inputs, ClayShape(c.dim, c.depth, c.heads, c.dim_head, c.mlp_ratio, c.patch_size))

    def read_record(self, data: Any) -> ClayRecord:
        return ClayRecord.from_dict(data)

    def describe(self, record: Any) -> list[str]:
        inputs, shape = record.inputs, record.encoder
        waves = ", ".join(f"{b.band} {b.wavelength_um:g} um" for b in inputs.bands)
        return [
            f"platform   {inputs.platform}: {waves}",
            f"inputs     {inputs.describe_conditions()}",
            "           predict feeds each scene its own pixel size, date and place (unknown date or place: zeros)",
            f"encoder    dim {shape.dim}, depth {shape.depth}, heads {shape.heads} x {shape.dim_head}, MLP ratio {shape.mlp_ratio:g}, patch {shape.patch_size}",
        ]
