"""Prithvi-EO checkpoints (a config.json naming a `prithvi_*` architecture or a frame count, and
one .pt checkpoint), converted to a timm ViT by backbone/prithvi.py. The Prithvi-EO-2.0 repos
have aliases; their checkpoint names are known, other Prithvi repos are listed for their one .pt.

The TL models (config `coords_encoding`: time, location; `prithvi-eo-2-tiny` among them) take a
scene's date and centre (backbone/prithvi_tl_backbone.py): a run trains with the median date and
centre of its training images and `predict` feeds each scene its own. Their run.json backbone
record holds a "prithvi" section (`PrithviTLRecord`): which pairs the run uses and where they
came from. Every alias resolves the repo's `main` to its commit when first pulled; the run
records that commit, and `predict` loads exactly it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cegate_cli.backbone.family import NO_MATCH, SPECIFIC_MATCH, BackboneFamily, HubAlias, Pretrained, RepoFiles
from cegate_cli.backbone.prithvi_tl_record import PrithviTLInputs, PrithviTLRecord
from cegate_cli.backbone.registry import register_family
from cegate_cli.backbone.source import BackboneSource, read_backbone_config
from cegate_cli.errors import BackboneNotFoundError, InputError

WEIGHT_SUFFIX = ".pt"
WEIGHT_FILES: dict[str, str] = {
    "ibm-nasa-geospatial/Prithvi-EO-2.0-300M": "Prithvi_EO_V2_300M.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL": "Prithvi_EO_V2_300M_TL.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-600M": "Prithvi_EO_V2_600M.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL": "Prithvi_EO_V2_600M_TL.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-100M-TL": "Prithvi_EO_V2_100M_TL.pt",
    "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL": "Prithvi_EO_V2_tiny_TL.pt",
}
"""Checkpoint names in the Prithvi-EO-2.0 repos (one .pt each); other Prithvi repos are listed."""


@register_family
class PrithviFamily(BackboneFamily):
    name = "prithvi"
    aliases = {
        "prithvi-eo-2-300m": HubAlias("ibm-nasa-geospatial/Prithvi-EO-2.0-300M", "Prithvi-EO-2.0 ViT-L/16, 6 HLS bands, 300M parameters"),
        "prithvi-eo-2-600m": HubAlias("ibm-nasa-geospatial/Prithvi-EO-2.0-600M", "Prithvi-EO-2.0 ViT-H/14, 6 HLS bands, 600M parameters"),
        "prithvi-eo-2-tiny": HubAlias(
            "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL",
            "Prithvi-EO-2.0 tiny-TL ViT/16 (width 192, 12 blocks), 6 HLS bands, date and place inputs, 5M parameters",
        ),
    }
    layout = "a prithvi_* architecture or num_frames, and one .pt checkpoint"
    record_key = "prithvi"

    def config_match(self, config: dict[str, Any]) -> int:
        architecture = str(config.get("architecture", ""))
        pretrained_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else config
        return SPECIFIC_MATCH if architecture.lower().startswith("prithvi") or "num_frames" in pretrained_cfg else NO_MATCH

    def weights_file(self, files: RepoFiles, spec: str) -> Path:
        known = WEIGHT_FILES.get(files.repo_id or "")
        if known is not None:
            return files.get(known)
        return files.get(pick_checkpoint(files.listed(WEIGHT_SUFFIX), spec, files.where))

    def load(self, source: BackboneSource) -> Pretrained:
        from cegate_cli.backbone.prithvi import prithvi_vit
        from cegate_cli.backbone.weights_io import read_weights

        config_path, weights_path = source.files()
        return prithvi_vit(read_backbone_config(config_path), read_weights(weights_path), str(config_path), str(weights_path))

    def record(self, backbone: Any, inputs: PrithviTLInputs | None) -> PrithviTLRecord | None:
        """TL models: the date and centre the run trained with and where they came from; None otherwise."""
        return None if inputs is None else PrithviTLRecord(inputs)

    def read_record(self, data: Any) -> PrithviTLRecord:
        return PrithviTLRecord.from_dict(data)

    def describe(self, record: Any) -> list[str]:
        return record.describe()


def pick_checkpoint(candidates: list[str], spec: str, where: str) -> str:
    """The one checkpoint of a Prithvi model folder; none or several is an error that says what to do."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BackboneNotFoundError(f"backbone '{spec}' has no {WEIGHT_SUFFIX} checkpoint in {where}")
    raise InputError(
        f"backbone '{spec}' has several checkpoints in {where} ({', '.join(candidates)}) and cegate cannot tell "
        "which to use; put config.json and the one you want in a folder of their own and give that folder"
    )
