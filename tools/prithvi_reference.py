"""Reference outputs of the authors' Prithvi-EO-2.0 tiny-TL encoder, for cegate's equality tests.

    /work/venvs/prithvi/bin/python tools/prithvi_reference.py \
        --prithvi-mae /path/to/terratorch/models/backbones/prithvi_mae.py \
        --out tests/fixtures/prithvi_tiny

The authors' module (`PrithviViT`, `PrithviMAE` in IBM/terratorch's prithvi_mae.py, the same file
the Prithvi-EO-2.0 Hub repos ship) is imported from the path given, never copied into cegate; it
needs einops, so run this from a virtual environment that has it. It builds the tiny-TL encoder as
terratorch's `prithvi_eo_v2_tiny_tl` does (embed 192, 3 heads, patch 16, 6 HLS bands, one frame,
time and location encoders with learnable scales), at `--depth` blocks so the fixture stays small
(the real model has 12; its blocks are timm `Block`s, the same at every depth), gives every tensor seeded random values
(rounded to float16, the precision they are stored in; both encoders run in float32), and runs
`forward_features` on HLS reflectance with and without (year, day of year) and (lat, lon) as the
authors pass them: temporal_coords (B, 1, 2), location_coords (B, 2).

Writes to --out:
- weights.safetensors: the encoder, keyed as in the released MAE checkpoints (`encoder.*`);
- inputs.safetensors: HLS reflectance (int16, scaled by 10000) per case, the coordinates;
- outputs.safetensors: per case, the last block's normalised tokens (`forward_features`' last
  output) and, at the small size, the last block's own output before the norm (what cegate's
  feature maps are made of), taken with a forward hook on that block;
- reference.json: the configuration, the cases, the HLS normalisation, the sha256 of the authors'
  file, and the key names and shapes of a full tiny-TL MAE checkpoint (real depth, decoder
  included) as the authors' `PrithviMAE` names them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import save_file

FORMAT = "cegate-prithvi-reference/1"
SOURCE = "https://github.com/IBM/terratorch terratorch/models/backbones/prithvi_mae.py"

# terratorch prithvi_vit.py, prithvi_cfgs["prithvi_eo_v2_tiny_tl"] (built for one frame, as terratorch does).
TINY_TL = {
    "img_size": 224,
    "patch_size": [1, 16, 16],
    "num_frames": 1,
    "in_chans": 6,
    "embed_dim": 192,
    "depth": 12,
    "num_heads": 3,
    "mlp_ratio": 4.0,
    "coords_encoding": ["time", "location"],
    "coords_scale_learn": True,
}
TINY_TL_DECODER = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
HLS_MEAN = [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0]
HLS_STD = [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0]

# (name, height, width, per-sample (year, day of year, lat, lon)); each size runs with and without
# coordinates, the second also with time only and location only.
SIZES = (
    ("224", 224, 224, [(2021, 185, 45.52, -122.68)]),
    ("32x48", 32, 48, [(2019, 32, -33.87, 151.21), (2023, 300, 64.14, -21.94)]),
)


def load_authors_module(path: Path) -> ModuleType:
    """prithvi_mae.py from a file, or from a terratorch checkout holding it."""
    if path.is_dir():
        path = path / "terratorch" / "models" / "backbones" / "prithvi_mae.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} is not the authors' prithvi_mae.py")
    spec = importlib.util.spec_from_file_location("authors_prithvi_mae", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Seeded values in every tensor (biases and norms too), rounded to float16; the fixed
    position embedding keeps its sin-cos values; the coordinate scales get distinct sizes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict(keep_vars=True).items()):
            if name == "pos_embed":
                values = tensor
            elif name.endswith("embed_enc.scale"):
                values = 0.2 + 0.5 * torch.rand(tensor.shape, generator=generator)
            elif name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
                values = 1.0 + 0.1 * torch.randn(tensor.shape, generator=generator)
            else:
                fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
                values = torch.randn(tensor.shape, generator=generator) / max(fan_in, 1) ** 0.5
            tensor.copy_(values.half().float())


def hls_reflectance(batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """HLS surface reflectance scaled by 10000 (int16), spread around each band's mean."""
    mean = torch.tensor(HLS_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(HLS_STD).view(1, -1, 1, 1)
    values = mean + std * torch.randn(batch, len(HLS_MEAN), height, width, generator=generator)
    return values.round().clamp(-100, 16000).to(torch.int16)


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """(reflectance - mean) / std in float32: the Prithvi-EO-2.0 normalisation, as the tests redo it."""
    mean = torch.tensor(HLS_MEAN, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(HLS_STD, dtype=torch.float32).view(1, -1, 1, 1)
    return (raw.to(torch.float32) - mean) / std


def checkpoint_shapes(module: ModuleType, num_frames: int) -> dict[str, list[int]]:
    """Every tensor name and shape of a tiny-TL MAE checkpoint at the real depth, decoder included."""
    config = {key: value for key, value in TINY_TL.items()}
    config["num_frames"] = num_frames
    mae = module.PrithviMAE(**config, **TINY_TL_DECODER)
    return {key: list(value.shape) for key, value in mae.state_dict().items()}


def build(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prithvi-mae", type=Path, required=True, help="the authors' prithvi_mae.py, or a terratorch checkout")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--depth", type=int, default=1, help="encoder blocks in the fixture (the real model has 12)")
    parser.add_argument("--seed", type=int, default=31)
    args = parser.parse_args(argv)

    module = load_authors_module(args.prithvi_mae)
    source_file = args.prithvi_mae if args.prithvi_mae.is_file() else (args.prithvi_mae / "terratorch" / "models" / "backbones" / "prithvi_mae.py")
    config = dict(TINY_TL, depth=args.depth)
    torch.manual_seed(args.seed)
    encoder = module.PrithviViT(**config).eval()
    randomise(encoder, args.seed)

    generator = torch.Generator().manual_seed(args.seed + 1)
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    cases: list[dict[str, object]] = []
    for size, height, width, samples in SIZES:
        raw = hls_reflectance(len(samples), height, width, generator)
        temporal = torch.tensor([[[year, day]] for year, day, _, _ in samples], dtype=torch.float32)
        location = torch.tensor([[lat, lon] for _, _, lat, lon in samples], dtype=torch.float32)
        inputs[f"{size}.hls"] = raw
        inputs[f"{size}.temporal_coords"] = temporal
        inputs[f"{size}.location_coords"] = location
        variants = [("none", None, None), ("time_location", temporal, location)]
        if len(samples) > 1:
            variants += [("time", temporal, None), ("location", None, location)]
        for label, time_coords, place_coords in variants:
            captured: list[torch.Tensor] = []
            hook = encoder.blocks[-1].register_forward_hook(lambda _m, _i, out, captured=captured: captured.append(out.detach().clone()))
            with torch.no_grad():
                features = encoder.forward_features(normalise(raw), time_coords, place_coords)
            hook.remove()
            name = f"{size}.{label}"
            outputs[f"{name}.final"] = features[-1].contiguous()
            if size != "224":  # kept small: the 224 tokens are 150 kB a tensor
                outputs[f"{name}.last_block"] = captured[0].contiguous()
            cases.append(
                {"name": name, "size": size, "height": height, "width": width, "temporal": time_coords is not None, "location": place_coords is not None}
            )

    weights = {f"encoder.{key}": value.detach().half().contiguous() for key, value in encoder.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(args.out / "weights.safetensors"), metadata={"format": FORMAT})
    save_file(inputs, str(args.out / "inputs.safetensors"), metadata={"format": FORMAT})
    save_file(outputs, str(args.out / "outputs.safetensors"), metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "what": "Random-weight Prithvi-EO-2.0 tiny-TL encoder run by the authors' PrithviViT.forward_features; regenerate with tools/prithvi_reference.py.",
        "source": SOURCE,
        "source_sha256": hashlib.sha256(source_file.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "seed": args.seed,
        "config": config,
        "architecture": "prithvi_eo_v2_tiny_tl",
        "weights_dtype": "float16 (run in float32)",
        "mean": HLS_MEAN,
        "std": HLS_STD,
        "cases": cases,
        "real_checkpoint": {
            "config": dict(TINY_TL, **TINY_TL_DECODER),
            "shapes_one_frame": checkpoint_shapes(module, 1),
            "shapes_four_frames": checkpoint_shapes(module, 4),
        },
    }
    text = re.sub(r"\[[\d.,\s-]*\]", lambda m: json.dumps(json.loads(m.group(0))), json.dumps(record, indent=1))
    (args.out / "reference.json").write_text(text + "\n", encoding="utf-8")
    for path in sorted(args.out.iterdir()):
        print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(build())
