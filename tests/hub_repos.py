"""Tiny backbone repositories for the hub, loader and Prithvi tests, in the layouts the real ones use.

- `tiny_timm_repo`: what timm's own `save_for_hf` writes (config.json + model.safetensors), from a
  real timm ViT with a few thousand parameters.
- `tiny_prithvi_checkpoint`: a Prithvi-EO-2.0 MAE checkpoint with the real key names and shapes
  (`encoder.patch_embed.proj.weight` as a Conv3d kernel (D, C, 1, p, p), a multi-frame
  `encoder.pos_embed`, timm blocks, the decoder, the TL metadata encoders) at toy dimensions.
- `tiny_tl_repo`: ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL's files (config.json in the layout of
  the Prithvi-EO-2.0 repos, `Prithvi_EO_V2_tiny_TL.pt` with every key and shape of the real MAE
  checkpoint as tests/fixtures/prithvi_tiny/reference.json lists them), random encoder weights,
  fewer encoder blocks when asked.
- `write_hub_cache`: the Hub cache layout huggingface_hub reads (blobs, snapshots, refs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import timm
import torch
from timm.models import _hub as timm_hub
from timm.models.vision_transformer import Block
from torch import nn

TIMM_ARCH = "vit_tiny_patch16_224"
TIMM_ARGS = dict(embed_dim=32, depth=2, num_heads=2, img_size=32, patch_size=8)


def tiny_timm_repo(seed: int = 0, *, head_classes: int = 0, **overrides: object) -> tuple[dict[str, bytes], nn.Module]:
    """(files of a timm Hub repo, the model they hold). `head_classes` > 0 saves a classifier head too."""
    torch.manual_seed(seed)
    args = {**TIMM_ARGS, **overrides}
    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=head_classes, **args).eval()
    with tempfile.TemporaryDirectory() as folder:
        timm_hub.save_for_hf(model, folder, safe_serialization=True)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    return files, model


# ------------------------------------------------------------------------------------ Prithvi

PRITHVI_DIM = 32
PRITHVI_DEPTH = 2
PRITHVI_HEADS = 2
PRITHVI_PATCH = 8
PRITHVI_IMG = 32
PRITHVI_FRAMES = 4
PRITHVI_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07"]


def tiny_prithvi_config(**overrides: object) -> dict:
    """A config.json shaped like ibm-nasa-geospatial/Prithvi-EO-2.0-300M's, at toy size."""
    pretrained_cfg = {
        "img_size": PRITHVI_IMG,
        "num_frames": PRITHVI_FRAMES,
        "patch_size": [1, PRITHVI_PATCH, PRITHVI_PATCH],
        "in_chans": len(PRITHVI_BANDS),
        "embed_dim": PRITHVI_DIM,
        "depth": PRITHVI_DEPTH,
        "num_heads": PRITHVI_HEADS,
        "decoder_embed_dim": 16,
        "decoder_depth": 1,
        "decoder_num_heads": 2,
        "mlp_ratio": 4,
        "coords_encoding": ["time", "location"],
        "coords_scale_learn": True,
        "mask_ratio": 0.75,
        "norm_pix_loss": False,
        "bands": PRITHVI_BANDS,
        "mean": [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0],
        "std": [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0],
    }
    pretrained_cfg.update(overrides)
    return {"architecture": "prithvi_eo_v2_300_tl", "num_features": PRITHVI_DIM, "pretrained_cfg": pretrained_cfg}


def tiny_prithvi_checkpoint(seed: int = 0, tubelet: int = 1) -> dict[str, torch.Tensor]:
    """A Prithvi MAE state dict: encoder (3-D patch embed, 3-D pos embed, timm blocks, norm,
    TL metadata scales) and decoder, all with the names the released checkpoints use."""
    generator = torch.Generator().manual_seed(seed)
    channels = len(PRITHVI_BANDS)
    grid = PRITHVI_IMG // PRITHVI_PATCH
    state: dict[str, torch.Tensor] = {
        "encoder.cls_token": torch.randn(1, 1, PRITHVI_DIM, generator=generator) * 0.02,
        # Random rather than sin-cos, so a test sees whether the checkpoint's own values were used.
        "encoder.pos_embed": torch.randn(1, 1 + PRITHVI_FRAMES // tubelet * grid * grid, PRITHVI_DIM, generator=generator),
        "encoder.patch_embed.proj.weight": torch.randn(PRITHVI_DIM, channels, tubelet, PRITHVI_PATCH, PRITHVI_PATCH, generator=generator) * 0.05,
        "encoder.patch_embed.proj.bias": torch.randn(PRITHVI_DIM, generator=generator) * 0.1,
        "encoder.temporal_embed_enc.scale": torch.full((1,), 0.1),
        "encoder.location_embed_enc.scale": torch.full((1,), 0.1),
        "encoder.norm.weight": 1 + 0.1 * torch.randn(PRITHVI_DIM, generator=generator),
        "encoder.norm.bias": 0.1 * torch.randn(PRITHVI_DIM, generator=generator),
        "decoder.mask_token": torch.zeros(1, 1, 16),
        "decoder.decoder_pos_embed": torch.zeros(1, 1 + PRITHVI_FRAMES * grid * grid, 16),
        "decoder.decoder_embed.weight": torch.randn(16, PRITHVI_DIM, generator=generator),
        "decoder.decoder_embed.bias": torch.zeros(16),
        "decoder.decoder_norm.weight": torch.ones(16),
        "decoder.decoder_norm.bias": torch.zeros(16),
        "decoder.decoder_pred.weight": torch.randn(channels * PRITHVI_PATCH**2, 16, generator=generator),
        "decoder.decoder_pred.bias": torch.zeros(channels * PRITHVI_PATCH**2),
        "decoder.temporal_embed_dec.scale": torch.full((1,), 0.1),
        "decoder.location_embed_dec.scale": torch.full((1,), 0.1),
    }
    for index in range(PRITHVI_DEPTH):
        block = Block(PRITHVI_DIM, PRITHVI_HEADS, 4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
        for name, tensor in block.state_dict().items():
            state[f"encoder.blocks.{index}.{name}"] = torch.randn(tensor.shape, generator=generator) * 0.1 + (
                1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0.0
            )
    decoder_block = Block(16, 2, 4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
    for name, tensor in decoder_block.state_dict().items():
        state[f"decoder.decoder_blocks.0.{name}"] = tensor.clone()
    return state


def torch_save_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tiny_prithvi_repo(seed: int = 0, weights_name: str = "Prithvi_EO_V2_300M.pt") -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    checkpoint = tiny_prithvi_checkpoint(seed)
    files = {"config.json": json.dumps(tiny_prithvi_config()).encode(), weights_name: torch_save_bytes(checkpoint)}
    return files, checkpoint


TINY_TL_REPO = "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL"
TINY_TL_WEIGHTS = "Prithvi_EO_V2_tiny_TL.pt"
_PRITHVI_TINY_REFERENCE = Path(__file__).parent / "fixtures" / "prithvi_tiny" / "reference.json"


def tiny_tl_checkpoint(depth: int = 12, seed: int = 0, time_scale: float = 0.1, location_scale: float = 0.1) -> dict[str, torch.Tensor]:
    """The tiny-TL MAE checkpoint's tensors (real names and shapes, four-frame position embeddings),
    random encoder weights, the first `depth` encoder blocks only; the decoder, which cegate drops,
    is zeros stored as one broadcast value so the file stays small."""
    layout = json.loads(_PRITHVI_TINY_REFERENCE.read_text(encoding="utf-8"))["real_checkpoint"]["shapes_four_frames"]
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        if key.startswith("encoder.blocks.") and int(key.split(".")[2]) >= depth:
            continue
        if key.startswith("decoder."):
            state[key] = torch.zeros(1).expand(shape)
        elif key == "encoder.temporal_embed_enc.scale":
            state[key] = torch.full(shape, time_scale)
        elif key == "encoder.location_embed_enc.scale":
            state[key] = torch.full(shape, location_scale)
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=generator)
    return state


def tiny_tl_config(depth: int = 12) -> dict:
    """config.json as the Prithvi-EO-2.0 TL repos lay it out, with tiny-TL's architecture."""
    reference = json.loads(_PRITHVI_TINY_REFERENCE.read_text(encoding="utf-8"))
    pretrained_cfg = {
        **reference["real_checkpoint"]["config"],
        "num_frames": 4,
        "depth": depth,
        "mask_ratio": 0.75,
        "norm_pix_loss": False,
        "bands": PRITHVI_BANDS,
        "mean": reference["mean"],
        "std": reference["std"],
        "origin_url": f"https://huggingface.co/{TINY_TL_REPO}",
    }
    return {"architecture": "prithvi_eo_v2_tiny_tl", "num_features": 192, "pretrained_cfg": pretrained_cfg}


def tiny_tl_repo(depth: int = 2, seed: int = 0, **scales: float) -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    """(files of the tiny-TL Hub repo, its checkpoint): config.json, the .pt, a README."""
    checkpoint = tiny_tl_checkpoint(depth, seed, **scales)
    files = {
        "config.json": json.dumps(tiny_tl_config(depth), indent=2).encode(),
        TINY_TL_WEIGHTS: torch_save_bytes(checkpoint),
        "README.md": b"---\nlicense: apache-2.0\nlibrary_name: terratorch\n---\n# Prithvi-EO-2.0 tiny TL\n",
    }
    return files, checkpoint


# ---------------------------------------------------------------------------------- Hub cache


def write_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes], commit: str, ref: str = "main") -> Path:
    """Lay `files` out as huggingface_hub's cache does; returns the snapshot folder.

    models--ORG--NAME/blobs/<etag> holds the bytes (etag: sha256 for large files, git sha1 for
    small ones), snapshots/<commit>/<file> links to the blob, refs/<ref> holds the commit.
    """
    repo_folder = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_folder / "snapshots" / commit
    (repo_folder / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name.endswith((".safetensors", ".bin", ".pt")):
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = repo_folder / "blobs" / etag
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo_folder / "refs").mkdir(exist_ok=True)
    (repo_folder / "refs" / ref).write_text(commit)
    return snapshot
