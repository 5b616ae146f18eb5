"""Small real GeoTIFFs and real torch models shared by the prediction tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.data.stats import BandStats

UTM_TRANSFORM = from_origin(500000.0, 5000000.0, 10.0, 10.0)  # zone 33N: lon 15 E, lat ~45.1 N


def write_scene(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform=UTM_TRANSFORM,
    nodata: float | None = None,
    block: int | None = None,
    **extra,
) -> Path:
    """Write (C, H, W) or (H, W) `data` as a GeoTIFF (tiled with `block` if given)."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        nodata=nodata,
    )
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if block is not None:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def random_scene(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 1000, size=(bands, height, width)).astype(np.uint16)


def band_stats(bands: int = 3) -> BandStats:
    return BandStats(tuple(f"b{i}" for i in range(bands)), (500.0,) * bands, (290.0,) * bands)


def class_table(num_classes: int) -> ClassTable:
    names = ["water", "forest", "crop", "urban", "bare", "snow", "cloud", "wetland"]
    colors = [(0, 0, 255), (0, 128, 0), (255, 255, 0), (255, 0, 0), (128, 64, 0), (255, 255, 255), (200, 200, 200), (0, 128, 128)]
    return ClassTable(tuple(ClassInfo(i, names[i], colors[i]) for i in range(num_classes)))


def pixel_model(in_channels: int = 3, num_classes: int = 4, seed: int = 0) -> torch.nn.Module:
    """A fixed random 1x1 convolution: each pixel's class depends on that pixel only."""
    torch.manual_seed(seed)
    model = torch.nn.Conv2d(in_channels, num_classes, kernel_size=1)
    with torch.no_grad():
        model.weight.mul_(3.0)
    return model


class ConstantLogits(torch.nn.Module):
    """The same logits at every pixel, whatever the input."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3]).clone()


def whole_image_classes(model: torch.nn.Module, data: np.ndarray, stats: BandStats) -> np.ndarray:
    """Reference: the model run once on the whole normalised scene."""
    with torch.no_grad():
        logits = model(torch.from_numpy(stats.normalize(data))[None])
    return logits.argmax(dim=1)[0].numpy().astype(np.uint8)
