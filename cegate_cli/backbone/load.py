"""A timm-format repo's files -> a timm VisionTransformer with its pretrained weights (`PretrainedViT`).

config.json names a timm architecture and its constructor arguments; the model is built empty
with `num_classes=0` and `dynamic_img_size=True`, then given the weights (the timm family,
backbone/timm_family.py). Weights are read and loaded through `backbone.weights_io` (no code
ever unpickled; strict keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.backbone.source import read_backbone_config
from cegate_cli.backbone.vit import PretrainedViT
from cegate_cli.backbone.weights_io import load_state_strict, read_weights
from cegate_cli.errors import InputError

RGB_BANDS: tuple[str, ...] = ("red", "green", "blue")
_BAND_KEYS = ("band_names", "bands")


def load_timm_vit(config_path: Path, weights_path: Path) -> PretrainedViT:
    """A timm-format repo (config.json + weights) as a headless, any-size ViT."""
    config = read_backbone_config(config_path)
    architecture = config.get("architecture")
    if not isinstance(architecture, str) or not timm.is_model(architecture):
        raise InputError(f"'{config_path}' names architecture {architecture!r}, which this timm ({timm.__version__}) does not know")
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    model_args = dict(config.get("model_args") or {})
    model_args.update(num_classes=0, dynamic_img_size=True)
    model_args.pop("weight_init", None)
    try:
        try:
            # Every parameter is overwritten by the strict load below, so random init is skipped:
            # it costs seconds for ViT-S and minutes for ViT-L on a CPU.
            vit = timm.create_model(architecture, pretrained=False, pretrained_cfg_overlay=dict(pretrained_cfg), weight_init="skip", **model_args)
        except TypeError:  # a model class without the weight_init argument
            vit = timm.create_model(architecture, pretrained=False, pretrained_cfg_overlay=dict(pretrained_cfg), **model_args)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"timm cannot build {architecture!r} with the model_args in '{config_path}': {exc}") from None
    if not isinstance(vit, (VisionTransformer, Eva)):
        raise InputError(f"'{config_path}' describes a {type(vit).__name__}; cegate adapts timm VisionTransformer and Eva models")
    state = _drop_classifier(read_weights(weights_path), pretrained_cfg)
    _fit_pos_embed(state, vit)
    load_state_strict(vit, state, weights_path, architecture)
    return PretrainedViT(vit=vit, band_names=_band_names(config, pretrained_cfg, vit), architecture=architecture)


def _drop_classifier(state: dict[str, Any], pretrained_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors minus the classifier head (num_classes=0 means the model has none)."""
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    heads = pretrained_cfg.get("classifier") or "head"
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor) and not any(key == h or key.startswith(f"{h}.") for h in heads)}


def _fit_pos_embed(state: dict[str, torch.Tensor], vit: VisionTransformer) -> None:
    """Resample the checkpoint's position embedding when its grid differs from the built model's."""
    saved = state.get("pos_embed")
    if saved is None or getattr(vit, "pos_embed", None) is None or saved.shape == vit.pos_embed.shape:
        return
    prefix = 0 if getattr(vit, "no_embed_class", False) else int(vit.num_prefix_tokens)
    state["pos_embed"] = resample_abs_pos_embed(saved, new_size=list(vit.patch_embed.grid_size), num_prefix_tokens=prefix, verbose=False)


def _band_names(config: dict[str, Any], pretrained_cfg: dict[str, Any], vit: VisionTransformer) -> tuple[str, ...] | None:
    """Bands named by the repo, else red/green/blue for 3-channel models (ImageNet, DINOv2), else unknown."""
    in_chans = int(vit.patch_embed.proj.weight.shape[1])
    for holder in (config, pretrained_cfg):
        for key in _BAND_KEYS:
            names = holder.get(key)
            if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
                if len(names) != in_chans:
                    raise InputError(f"the backbone config lists {len(names)} bands ({', '.join(names)}) but the weights take {in_chans}")
                return tuple(n.strip().lower() for n in names)
    return RGB_BANDS if in_chans == 3 else None
