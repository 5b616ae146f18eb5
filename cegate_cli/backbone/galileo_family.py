"""Galileo (nasaharvest): Sentinel-1/2 bands in channel groups, pixel size and month as inputs.

The authors' repo keeps one model per folder (`models/<size>/config.json` + `encoder.pt`): the
aliases `galileo-tiny` and `galileo-base` name those folders, `hf-hub:ORG/NAME/FOLDER` any other,
and `galileo-nano` ships inside the package (the authors' weights as safetensors). The encoder is
backbone/galileo.py, the bridge from a run's bands backbone/galileo_backbone.py; run.json's
backbone record holds a "galileo" section: the inputs (`GalileoInputs`) and the groups filled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cegate_cli.backbone.embedded import GALILEO_NANO_CONFIG, GALILEO_NANO_WEIGHTS
from cegate_cli.backbone.family import NO_MATCH, SPECIFIC_MATCH, BackboneFamily, HubAlias, Pretrained, RepoFiles
from cegate_cli.backbone.galileo_options import GalileoInputs, GalileoRecord
from cegate_cli.backbone.registry import register_family
from cegate_cli.backbone.source import BackboneSource, file_sha256

REPO = "nasaharvest/galileo"
NANO_SPEC = "galileo-nano"
WEIGHT_NAMES = ("encoder.safetensors", "encoder.pt")

_MONTH_FROM = {"option": " (--month)", "imagery": " (from the files' dates)", "default": " (default: no date tags)"}
_PREDICT_MONTH = {"option": " (the month stays --month's)", "imagery": " and month where its tags give one", "default": " and month where its tags give one"}


@register_family
class GalileoFamily(BackboneFamily):
    name = "galileo"
    aliases = {
        "galileo-tiny": HubAlias(REPO, "Galileo-tiny, Sentinel-1/2 channel groups, 5.3M parameters", "models/tiny"),
        "galileo-base": HubAlias(REPO, "Galileo-base, Sentinel-1/2 channel groups, 85M parameters", "models/base"),
    }
    embedded_specs = (NANO_SPEC,)
    layout = "a model.encoder block, and encoder.safetensors or encoder.pt"
    record_key = "galileo"
    unmatched_band = "unused"

    def embedded_source(self, spec: str) -> BackboneSource:
        """Galileo-nano as shipped in the package (the authors' weights converted to safetensors)."""
        return BackboneSource(
            spec=NANO_SPEC,
            kind=self.name,
            repo_id=None,
            revision=None,
            local_dir=GALILEO_NANO_WEIGHTS.parent,
            config_path=GALILEO_NANO_CONFIG,
            weights_path=GALILEO_NANO_WEIGHTS,
            weights_sha256=file_sha256(GALILEO_NANO_WEIGHTS),
        )

    def config_match(self, config: dict[str, Any]) -> int:
        """Galileo's config.json holds `model.encoder`."""
        model = config.get("model")
        return SPECIFIC_MATCH if isinstance(model, dict) and isinstance(model.get("encoder"), dict) else NO_MATCH

    def weights_file(self, files: RepoFiles, spec: str) -> Path:
        return files.first_of(WEIGHT_NAMES)

    def load(self, source: BackboneSource) -> Pretrained:
        from cegate_cli.backbone.galileo_backbone import load_pretrained_galileo

        return load_pretrained_galileo(*source.files())

    def record(self, backbone: Any, inputs: GalileoInputs | None) -> GalileoRecord | None:
        """The inputs the backbone was built with, and which groups the run's bands filled."""
        if inputs is None:
            return None
        return GalileoRecord(inputs, backbone.plan.describe(backbone.bands))

    def read_record(self, data: Any) -> GalileoRecord:
        return GalileoRecord.from_dict(data)

    def describe(self, record: Any) -> list[str]:
        inputs = record.inputs
        groups = "; ".join(f"{g.group} <- {', '.join(g.bands)}" for g in record.groups)
        return [
            f"groups     {groups}",
            f"inputs     patch {inputs.patch_size} px, {inputs.gsd_m:.2f} m pixels, month {inputs.month + 1}"
            f"{_MONTH_FROM.get(inputs.month_from, '')}, {inputs.normalize} normalisation",
            f"           predict feeds each scene its own pixel size{_PREDICT_MONTH.get(inputs.month_from, ' and month')}",
        ]
