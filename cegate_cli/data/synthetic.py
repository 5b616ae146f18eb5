"""Generated GeoTIFF scenes with a real domain shift, for `cegate demo`, tests and benchmarks.

The scenes imitate a 4-band (blue, green, red, nir) reflectance product: uint16 0-10000, nodata 0,
a projected UTM CRS and real transforms. Four classes (water, vegetation, built-up, bare soil) are
laid out from smoothed random fields and blocky street grids whose sizes are given in metres, so a
different pixel size shows the same world at another scale.

The target domain differs the way a second sensor or season does: other per-band gains and
offsets (brighter visible bands, weaker NIR), blur and stronger sensor noise instead of crisp
texture, and 15 m instead of 10 m pixels. Spectra and shapes still separate the classes, so the
task stays learnable, but a model fitted to the source loses accuracy on the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.transform import from_origin

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.infra.atomic import atomic_path, write_text_atomic

Domain = Literal["source", "target"]

BAND_NAMES = ("blue", "green", "red", "nir")
NODATA = 0
MASK_NODATA = 255
DEMO_CLASSES = ClassTable(
    (
        ClassInfo(0, "water", (31, 120, 180)),
        ClassInfo(1, "vegetation", (51, 160, 44)),
        ClassInfo(2, "built-up", (227, 26, 28)),
        ClassInfo(3, "bare soil", (253, 191, 111)),
    ),
    ignore_index=MASK_NODATA,
)

# Mean surface reflectance x 10000 per class (blue, green, red, nir): water dark with almost no
# NIR, vegetation with a strong NIR plateau and green > red, built-up bright and flat, soil rising
# from blue to NIR with red > green.
_SPECTRA = np.array(
    [
        [550, 650, 450, 250],
        [350, 750, 450, 3300],
        [1500, 1550, 1650, 2000],
        [900, 1250, 1750, 2500],
    ],
    dtype=np.float32,
)
_STREET = np.array([850, 900, 950, 1050], dtype=np.float32)  # asphalt inside built-up blocks


@dataclass(frozen=True)
class DomainStyle:
    """How a domain renders the same kind of world: pixel size, radiometry and texture."""

    pixel_size: float
    gain: tuple[float, float, float, float]
    offset: tuple[float, float, float, float]
    blur_px: float
    """Gaussian blur (sigma, pixels) of the rendered scene: optics and resampling."""
    noise: float
    """Per-pixel sensor noise (std, reflectance units)."""
    texture: float
    """Strength of within-class texture (roofs, canopy) relative to the source."""
    crs: str
    season: tuple[tuple[float, float, float, float], ...] = ((0, 0, 0, 0),) * 4
    """Per-class change of the class spectra (a season changes vegetation, not roofs)."""


STYLES: dict[str, DomainStyle] = {
    "source": DomainStyle(10.0, (1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0), 0.0, 60.0, 1.0, "EPSG:32633"),
    "target": DomainStyle(
        15.0,
        (1.18, 1.12, 1.1, 0.78),
        (380.0, 320.0, 260.0, 120.0),
        1.2,
        200.0,
        0.5,
        "EPSG:32634",
        season=((0, 0, 0, 0), (0, -80, 150, -600), (0, 0, 0, 0), (-50, -100, -150, -300)),
    ),
}


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise, standardised to mean 0 and std 1.

    Wide fields are filtered on a grid `factor` times coarser and interpolated back: they hold no
    fine detail, and it keeps an 8192-pixel scene to seconds and a few hundred MB.
    """
    h, w = shape
    factor = max(1, int(sigma_px / 3))
    if factor == 1:
        field = _blur(rng.standard_normal(shape).astype(np.float32), sigma_px)
    else:
        small = rng.standard_normal((-(-h // factor) + 2, -(-w // factor) + 2)).astype(np.float32)
        field = _upsample(_fft_blur(small, sigma_px / factor), factor, h, w)
    return (field - field.mean()) / (field.std() + 1e-6)


def _upsample(small: np.ndarray, factor: int, h: int, w: int) -> np.ndarray:
    """Separable bilinear interpolation of a coarse field onto an h x w grid."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n, dtype=np.float32) + 0.5) / factor + 0.5
        start = pos.astype(np.int64)
        return start, (pos - start).astype(np.float32)

    y0, wy = axis(h)
    x0, wx = axis(w)
    rows = small[y0] * (1 - wy)[:, None] + small[y0 + 1] * wy[:, None]
    return rows[:, x0] * (1 - wx)[None] + rows[:, x0 + 1] * wx[None]


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of the last two axes: a separable kernel with mirrored edges."""
    if sigma_px <= 0:
        return image
    radius = max(1, int(np.ceil(3 * sigma_px)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2).astype(np.float32)
    taps /= taps.sum()
    if min(image.shape[-2:]) <= radius:  # too small to mirror
        return _fft_blur(image.astype(np.float32), sigma_px)
    out = image.astype(np.float32)
    for ax in (out.ndim - 2, out.ndim - 1):
        n = out.shape[ax]
        moved = np.moveaxis(out, ax, 0)
        padded = np.concatenate([moved[radius:0:-1], moved, moved[-2 : -radius - 2 : -1]], axis=0)
        acc = np.zeros_like(moved)
        scratch = np.empty_like(moved)
        for k, tap in enumerate(taps):
            np.multiply(padded[k : k + n], tap, out=scratch)
            acc += scratch
        out = np.moveaxis(acc, 0, ax)
    return np.ascontiguousarray(out)


def _fft_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur through the FFT (periodic edges): cheap at any sigma on small grids."""
    h, w = image.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=(h, w)).astype(np.float32)


def _layout(rng: np.random.Generator, shape: tuple[int, int], pixel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class per pixel, a street flag and a per-building brightness, all from sizes in metres."""
    h, w = shape
    water = _smooth(rng, shape, 280.0 / pixel) > rng.uniform(0.9, 1.4)
    urban = _smooth(rng, shape, 350.0 / pixel) > rng.uniform(0.3, 0.8)
    vegetation = _smooth(rng, shape, 140.0 / pixel) > rng.uniform(-0.3, 0.3)

    block_w, block_h = rng.uniform(50.0, 130.0, size=2)
    street = rng.uniform(10.0, 18.0)
    ys = (np.arange(h, dtype=np.float32) + 0.5) * pixel + rng.uniform(0, block_h)
    xs = (np.arange(w, dtype=np.float32) + 0.5) * pixel + rng.uniform(0, block_w)
    iy, ix = (ys // block_h).astype(np.int64), (xs // block_w).astype(np.int64)
    in_street = ((ys % block_h) < street)[:, None] | ((xs % block_w) < street)[None, :]
    blocks = rng.random((int(iy.max()) + 1, int(ix.max()) + 1))
    roof = rng.uniform(0.8, 1.25, size=blocks.shape)
    block_value = blocks[iy[:, None], ix[None, :]]
    building = urban & ~in_street & (block_value > 0.3)
    streets = urban & in_street

    classes = np.full(shape, 3, dtype=np.uint8)
    classes[vegetation] = 1
    classes[building | streets] = 2
    classes[water] = 0
    return classes, streets & ~water, roof[iy[:, None], ix[None, :]].astype(np.float32)


def _collar(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An irregular nodata strip along one edge, like the edge of a satellite swath."""
    h, w = shape
    side = int(rng.integers(4))
    length, depth = (w, h) if side in (0, 1) else (h, w)
    wobble = _fft_blur(rng.standard_normal((1, length)).astype(np.float32), length / 12)[0]
    wobble = wobble / (np.abs(wobble).max() + 1e-6)
    width = depth * (rng.uniform(0.08, 0.22) + 0.06 * wobble)
    distance = np.arange(depth, dtype=np.float32)[:, None]
    strip = distance < width[None, :]  # (depth, length), measured from the chosen edge
    if side == 1:
        strip = strip[::-1]
    if side >= 2:
        strip = strip.T if side == 2 else strip.T[:, ::-1]
    return np.ascontiguousarray(strip)


def render_scene(
    size: tuple[int, int], domain: Domain, seed: int, pixel_size: float | None = None, collar: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(4, H, W) uint16 reflectance and (H, W) uint8 labels, in memory; nodata 0 / 255."""
    if domain not in STYLES:
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    style = STYLES[domain]
    pixel = float(pixel_size or style.pixel_size)
    h, w = size
    rng = np.random.default_rng([seed, 0 if domain == "source" else 1])
    classes, streets, roof = _layout(rng, (h, w), pixel)

    spectra = _SPECTRA + np.asarray(style.season, np.float32)
    image = spectra[classes].transpose(2, 0, 1).copy()  # (4, H, W)
    image[:, streets] = _STREET[:, None]
    brightness = 1.0 + 0.08 * _smooth(rng, (h, w), 200.0 / pixel)  # illumination and moisture
    image *= brightness[None]
    built = (classes == 2) & ~streets
    image[:, built] *= roof[built][None]
    t = style.texture
    canopy = _smooth(rng, (h, w), 20.0 / pixel)
    image[3] += np.where(classes == 1, 380.0 * t * canopy, 0.0)
    image[1] += np.where(classes == 1, 60.0 * t * canopy, 0.0)
    roof_texture = rng.standard_normal((h, w)).astype(np.float32)
    image += np.where(classes == 2, 260.0 * t * roof_texture, 0.0)[None]
    image += np.where(classes == 3, 120.0 * t * _smooth(rng, (h, w), 40.0 / pixel), 0.0)[None]

    image = image * np.asarray(style.gain, np.float32)[:, None, None] + np.asarray(style.offset, np.float32)[:, None, None]
    image = _blur(image, style.blur_px)
    image += rng.normal(0.0, style.noise, size=image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image), 1, 10000).astype(np.uint16)  # 0 is reserved for nodata
    labels = classes.copy()
    if collar if collar is not None else rng.random() < 0.5:
        strip = _collar(rng, (h, w))
        pixels[:, strip] = NODATA
        labels[strip] = MASK_NODATA
    return pixels, labels


def make_scene(
    path_image: Path,
    path_mask: Path | None,
    *,
    size: tuple[int, int] | int,
    domain: Domain,
    seed: int,
    pixel_size: float | None = None,
    crs: str | None = None,
    origin: tuple[float, float] = (500000.0, 5000000.0),
    collar: bool | None = None,
) -> None:
    """Write one scene (and its mask, unless None) as tiled, compressed GeoTIFFs.

    `size` is (height, width) in pixels; `origin` the (x, y) of the top-left corner in the CRS.
    `pixel_size` and `crs` default to the domain's (10 m, EPSG:32633 source; 15 m, EPSG:32634 target).
    `collar` forces the nodata strip on or off; by default half the scenes get one.
    """
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    style = STYLES[domain] if domain in STYLES else None
    pixels, labels = render_scene(hw, domain, seed, pixel_size, collar)
    pixel = float(pixel_size or (style.pixel_size if style else 10.0))
    profile = {
        "driver": "GTiff",
        "height": hw[0],
        "width": hw[1],
        "crs": crs or (style.crs if style else "EPSG:32633"),
        "transform": from_origin(origin[0], origin[1], pixel, pixel),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with atomic_path(path_image) as tmp:
        with rasterio.open(tmp, "w", count=4, dtype="uint16", nodata=NODATA, **profile) as dst:
            dst.write(pixels)
            dst.descriptions = BAND_NAMES
            dst.update_tags(domain=domain, generator="cegate synthetic")
    if path_mask is not None:
        with atomic_path(path_mask) as tmp:
            with rasterio.open(tmp, "w", count=1, dtype="uint8", nodata=MASK_NODATA, **profile) as dst:
                dst.write(labels, 1)
                dst.write_colormap(1, {c.id: (*c.color, 255) for c in DEMO_CLASSES.classes})
                dst.update_tags(**{f"class_{c.id}": c.name for c in DEMO_CLASSES.classes})


def classes_yaml(table: ClassTable = DEMO_CLASSES) -> str:
    """The classes.yaml text for a table (colours as #rrggbb)."""
    lines = [f"ignore_index: {table.ignore_index}", "classes:"]
    for c in table.classes:
        lines.append(f"  - {{id: {c.id}, name: {c.name!r}, color: '#{c.color[0]:02x}{c.color[1]:02x}{c.color[2]:02x}'}}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DemoDataset:
    """Where `make_demo_dataset` put things."""

    root: Path
    source_dir: Path
    """images/, masks/ and classes.yaml: labeled source domain."""
    target_dir: Path
    """images/ only: the unlabeled target domain to adapt to."""
    target_labels_dir: Path
    """images/, masks/ and classes.yaml: other target scenes, held out for evaluation."""
    class_table: ClassTable


def _scene_seed(seed: int, group: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, group, index]).generate_state(1)[0])


def make_demo_dataset(root: Path, *, n_source: int = 6, n_target: int = 4, size: int = 256, seed: int = 0, n_target_eval: int | None = None) -> DemoDataset:
    """Write a labeled source folder, an unlabeled target folder and a labeled held-out target folder.

    Existing files of the same names are replaced. Every third scene is narrower (3/4 width) so
    sizes vary as they do in real folders. Deterministic from `seed`.
    """
    root = Path(root)
    ds = DemoDataset(root, root / "source", root / "target", root / "target_labeled", DEMO_CLASSES)
    groups: Sequence[tuple[Path, int, int, Domain, bool]] = (
        (ds.source_dir, 0, n_source, "source", True),
        (ds.target_dir, 1, n_target, "target", False),
        (ds.target_labels_dir, 2, n_target if n_target_eval is None else n_target_eval, "target", True),
    )
    for folder, group, count, domain, labeled in groups:
        pixel = STYLES[domain].pixel_size
        for i in range(count):
            width = size if i % 3 != 2 else max(16, size * 3 // 4)
            name = f"{domain}_{group}_{i:03d}.tif"
            make_scene(
                folder / "images" / name,
                folder / "masks" / name if labeled else None,
                size=(size, width),
                domain=domain,
                seed=_scene_seed(seed, group, i),
                origin=(400000.0 + i * size * pixel * 1.5, 5200000.0 - group * size * pixel * 2.0),
            )
        if labeled:
            write_text_atomic(folder / "classes.yaml", classes_yaml())
    return ds
