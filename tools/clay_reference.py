"""Reference outputs of the authors' Clay encoder, the yardstick of tests/test_clay.py.

    python3 -m venv --system-site-packages /work/venvs/clay
    /work/venvs/clay/bin/pip install "einops~=0.7.0"
    git -C <Clay-foundation/model clone> archive <commit> claymodel configs | tar -x -C <checkout>
    /work/venvs/clay/bin/python tools/clay_reference.py <checkout> --commit <commit>

The authors' code (github.com/Clay-foundation/model, Apache-2.0) is imported from the checkout
named on the command line: `claymodel.model.Encoder` with its `DynamicEmbedding`
(claymodel/factory.py), `Transformer` (claymodel/backbone.py) and position codes
(claymodel/utils.py), and the band wavelengths, pixel sizes and statistics of
configs/metadata.yaml. Nothing of it is copied into cegate and no import is stubbed: the encoder
needs einops beside torch, torchvision and timm, hence the venv above. Importing
claymodel/model.py sets torch's float32 matmul precision to "medium"; it is set back to
"highest" so that the reference is plain float32.

What it writes to --out (tests/fixtures/clay):
- small_encoder.safetensors: the weights of a reduced encoder (dim 32, depth 4, 2 heads of 16,
  MLP ratio 2, patch size 4: the same code, smaller) under the authors' key names, exactly what
  `Encoder.state_dict()` holds. The wavelength network keeps the authors' fixed sizes (128 wide,
  feed-forward 2048); those are most of the file. Stored as float16 to keep the fixture small:
  the weights are made float16-exact (`seeded_state`), so both sides compute in float32 with
  identical values.
- reference.safetensors: per case, the inputs exactly as the authors' encoder takes them
  (`pixels` (B, C, H, W), `time` and `latlon` (B, 4), `waves` (C,) in micrometres, `gsd` in
  metres) and its outputs: `embedded`, the patch tokens with their encodings (`to_patch_embed`
  then `add_encodings`); `block.<i>`, each block's output, class token first (hooks on the
  blocks' feed-forward, whose input plus output is what the block hands on); `encoded`, the
  encoder's output with masking off (`mask_ratio` 0, `shuffle` False: every patch, in order).
  The header's metadata holds the configurations, each case's bands, date and place, the
  authors' commit, their metadata.yaml values for the seven pretraining platforms, and the key
  names and shapes of the encoder at the real Clay v1.5 size.
- The case "large" runs the encoder at Clay v1.5's real size (dim 1024, depth 24, 16 heads of
  64, MLP ratio 4, patch size 8). Its 311M weights are not stored: they follow `seeded_state`
  from the seed in the metadata, which the test rebuilds; only the blocks cegate takes features
  from are kept. --no-large leaves it out (it needs about 4 GB of memory and half a minute).

Time and place are coded as the authors' tutorials do (docs/tutorials/wall-to-wall.ipynb,
`normalize_timestamp` and `normalize_latlon`), transcribed in `time_code` and `place_code`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

SMALL = {"dim": 32, "depth": 4, "heads": 2, "dim_head": 16, "mlp_ratio": 2, "patch_size": 4}
LARGE = {"dim": 1024, "depth": 24, "heads": 16, "dim_head": 64, "mlp_ratio": 4, "patch_size": 8}
SMALL_SEED, LARGE_SEED = 31, 15
LARGE_FEATURE_BLOCKS = (5, 11, 17, 23)
PLATFORMS = ("sentinel-2-l2a", "landsat-c2l2-sr", "landsat-c2l1", "naip", "linz", "sentinel-1-rtc", "modis")


@dataclass(frozen=True)
class Case:
    name: str
    platform: str
    bands: tuple[str, ...]
    """The authors' band names of `platform`, in the order fed."""
    size: int
    gsd_m: float
    dates: tuple[str | None, ...]
    """One ISO date-time per sample (None: unknown, coded as zeros)."""
    places: tuple[tuple[float, float] | None, ...]
    """One (lat, lon) per sample (None: unknown)."""
    seed: int


CASES: tuple[Case, ...] = (
    Case(
        "sentinel2",
        "sentinel-2-l2a",
        ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22"),
        32,
        10.0,
        ("2023-07-14T10:30:00", "2022-01-03T11:00:00"),
        ((48.85, 2.35), (-33.9, 18.4)),
        1,
    ),
    Case("sentinel2_subset", "sentinel-2-l2a", ("nir", "red", "green", "swir16"), 16, 20.0, ("2021-04-20T10:00:00",), ((61.2, -149.9),), 2),
    Case("naip", "naip", ("red", "green", "blue", "nir"), 24, 0.6, ("2021-06-01T00:00:00",), ((39.0, -76.5),), 3),
    Case(
        "landsat", "landsat-c2l2-sr", ("red", "green", "blue", "nir08", "swir16", "swir22"), 16, 30.0, ("2020-09-09T15:45:00", None), ((35.7, 139.7), None), 4
    ),
    Case("sentinel1", "sentinel-1-rtc", ("vv", "vh"), 16, 10.0, ("2019-12-31T05:00:00",), ((0.0, -60.0),), 5),
)
LARGE_CASE = Case("large", "sentinel-2-l2a", CASES[0].bands, 16, 10.0, ("2023-07-14T10:30:00",), ((48.85, 2.35),), 6)


def seeded_state(shapes: dict[str, Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random float16-exact float32 weights for every key, drawn in sorted key order from one
    generator: tensors of two or more dimensions N(0, 1/fan_in), 1-D weights (LayerNorm scales)
    1 + N(0, 0.01), 1-D biases N(0, 0.01). tests/test_clay.py rebuilds the large case with it."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        noise = torch.randn(shape, generator=generator)
        if len(shape) >= 2:
            value = noise / math.sqrt(shape[-1])
        elif name.endswith("weight"):
            value = 1 + 0.1 * noise
        else:
            value = 0.1 * noise
        state[name] = value.to(torch.float16).to(torch.float32)
    return state


def time_code(when: str | None) -> list[float]:
    """The authors' `normalize_timestamp`: (sin, cos) of ISO week * 2 pi / 52, then of hour * 2 pi / 24."""
    if when is None:
        return [0.0, 0.0, 0.0, 0.0]
    date = dt.datetime.fromisoformat(when)
    week = date.isocalendar().week * 2 * np.pi / 52
    hour = date.hour * 2 * np.pi / 24
    return [math.sin(week), math.cos(week), math.sin(hour), math.cos(hour)]


def place_code(place: tuple[float, float] | None) -> list[float]:
    """The authors' `normalize_latlon`: (sin, cos) of the latitude, then the longitude, in radians."""
    if place is None:
        return [0.0, 0.0, 0.0, 0.0]
    lat, lon = place[0] * np.pi / 180, place[1] * np.pi / 180
    return [math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)]


def import_authors(checkout: Path) -> Any:
    if not (checkout / "claymodel" / "model.py").is_file():
        raise SystemExit(f"{checkout}: no claymodel/model.py; give the root of a Clay-foundation/model checkout")
    sys.path.insert(0, str(checkout))
    import claymodel.model as authors  # noqa: PLC0415 - the checkout is known only now

    torch.set_float32_matmul_precision("highest")
    return authors


def build_encoder(authors: Any, config: dict[str, Any], seed: int) -> Any:
    encoder = authors.Encoder(mask_ratio=0.0, shuffle=False, **config)
    shapes = {name: tuple(tensor.shape) for name, tensor in encoder.state_dict().items()}
    encoder.load_state_dict(seeded_state(shapes, seed), strict=True)
    return encoder.eval()


def datacube(case: Case, metadata: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The inputs as the authors' `Encoder.forward` takes them."""
    generator = torch.Generator().manual_seed(case.seed)
    batch = len(case.dates)
    wavelengths = metadata[case.platform]["bands"]["wavelength"]
    return {
        "pixels": torch.randn(batch, len(case.bands), case.size, case.size, generator=generator),
        "time": torch.tensor(np.hstack([time_code(d) for d in case.dates]).reshape(batch, 4), dtype=torch.float32),
        "latlon": torch.tensor(np.hstack([place_code(p) for p in case.places]).reshape(batch, 4), dtype=torch.float32),
        "gsd": torch.tensor(case.gsd_m, dtype=torch.float32),
        "waves": torch.tensor([float(wavelengths[band]) for band in case.bands], dtype=torch.float32),
    }


def run_case(encoder: Any, case: Case, metadata: dict[str, Any], blocks: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The case's inputs and the authors' outputs, under `<case>.<name>`."""
    cube = datacube(case, metadata)
    layers = encoder.transformer.layers
    wanted = range(len(layers)) if blocks is None else blocks
    captured: dict[int, torch.Tensor] = {}
    handles = [layers[i][1].register_forward_hook(lambda _m, args, out, i=i: captured.__setitem__(i, (args[0] + out).detach().clone())) for i in wanted]
    with torch.no_grad():
        patches, _ = encoder.to_patch_embed(cube["pixels"], cube["waves"])
        embedded = encoder.add_encodings(patches, cube["time"], cube["latlon"], cube["gsd"])
        encoded, unmasked, masked, _ = encoder(cube)
    for handle in handles:
        handle.remove()
    patch_count = embedded.shape[1]
    if masked.numel() or not torch.equal(unmasked, torch.arange(patch_count).expand_as(unmasked)):
        raise SystemExit(f"{case.name}: the encoder masked or shuffled patches; expected mask_ratio 0 and shuffle False")
    out = {f"{case.name}.{key}": value.contiguous() for key, value in cube.items()}
    out[f"{case.name}.embedded"] = embedded.contiguous()
    out[f"{case.name}.encoded"] = encoded.contiguous()
    for i, value in captured.items():
        out[f"{case.name}.block.{i}"] = value.contiguous()
    return out


def platform_values(metadata: dict[str, Any]) -> dict[str, Any]:
    """The authors' metadata.yaml for the pretraining platforms: gsd, band order, per-band values."""
    values = {}
    for name in PLATFORMS:
        entry = metadata[name]
        bands = entry["bands"]
        values[name] = {
            "gsd": float(entry["gsd"]),
            "bands": [[band, float(bands["wavelength"][band]), float(bands["mean"][band]), float(bands["std"][band])] for band in entry["band_order"]],
        }
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="root of a Clay-foundation/model checkout (claymodel/, configs/)")
    parser.add_argument("--commit", required=True, help="the checkout's commit, recorded in the fixture")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/clay"))
    parser.add_argument("--no-large", action="store_true", help="leave out the case at Clay v1.5's real size")
    args = parser.parse_args(argv)

    import yaml

    authors = import_authors(args.checkout)
    metadata = yaml.safe_load((args.checkout / "configs" / "metadata.yaml").read_text())
    args.out.mkdir(parents=True, exist_ok=True)

    small = build_encoder(authors, SMALL, SMALL_SEED)
    tensors: dict[str, torch.Tensor] = {}
    for case in CASES:
        tensors.update(run_case(small, case, metadata))
    weights = {name: tensor.to(torch.float16).contiguous() for name, tensor in small.state_dict().items()}
    save_file(weights, str(args.out / "small_encoder.safetensors"), metadata={"format": "clay-encoder-authors-keys"})
    del small

    info: dict[str, Any] = {
        "authors_repository": "https://github.com/Clay-foundation/model",
        "authors_commit": args.commit,
        "torch": torch.__version__,
        "small": {**SMALL, "seed": SMALL_SEED},
        "cases": [asdict(case) for case in CASES],
        "platforms": platform_values(metadata),
    }
    if not args.no_large:
        large = build_encoder(authors, LARGE, LARGE_SEED)
        info["large"] = {**LARGE, "seed": LARGE_SEED, "blocks": list(LARGE_FEATURE_BLOCKS), "case": asdict(LARGE_CASE)}
        info["large_keys"] = [[name, list(tensor.shape)] for name, tensor in large.state_dict().items()]
        tensors.update(run_case(large, LARGE_CASE, metadata, LARGE_FEATURE_BLOCKS))
        del large
    save_file(tensors, str(args.out / "reference.safetensors"), metadata={"clay": json.dumps(info, sort_keys=True)})
    for path in sorted(args.out.glob("*.safetensors")):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
