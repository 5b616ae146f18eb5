"""A fixed, seeded sensor shift applied to real GeoTIFF tiles, for benchmarks/bench_real.py.

Real target-domain imagery with labels in the same class scheme is what a user has not got; a
shift written onto the NAIP tiles stands in for "the same landscape from another sensor": the
labels stay valid by construction, so the benchmark can score adaptation on real textures.
In the order a camera produces them:

1. blur: a Gaussian point spread of `blur_sigma` source pixels (a softer optic);
2. scale: `scale` x `scale` source pixels averaged into one (area resampling), 0.6 m -> 1.2 m at
   scale 2; labels take the source label nearest to the new pixel centre (no invented classes),
   and the geotransform's pixel size grows by `scale` from the same corner, so image and mask stay
   on one grid in the same CRS;
3. radiometry per band: out = 255 * gain * (x / 255) ** gamma + offset (another response curve,
   white balance and haze);
4. noise: Gaussian sensor noise of `noise` DN, seeded per tile; then rounding and clipping to uint8.

Gains, gammas and offsets are drawn once from `seed`, inside the ranges below; the drawn values
go into the benchmark's JSON and docs, so the shift is reproducible and described exactly.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from cegate_cli.data.synthetic import _blur  # the demo's sensor blur: one Gaussian for both benchmarks
from cegate_cli.infra.atomic import atomic_path, write_text_atomic

GAIN_RANGE = (0.75, 1.05)  # above ~1.05 the bright NAIP NIR (median 219 DN) would clip at 255
GAMMA_RANGE = (0.7, 1.4)  # drawn log-uniformly, so brightening and darkening curves are equally likely
OFFSET_RANGE = (-15.0, 25.0)  # DN of 0..255; more room upwards: haze adds light
STAMP = "shift.json"


@dataclass(frozen=True)
class Shift:
    """One sensor shift: the drawn per-band radiometry plus blur, scale and noise."""

    seed: int
    gain: tuple[float, ...]
    gamma: tuple[float, ...]
    offset: tuple[float, ...]
    blur_sigma: float = 1.0
    scale: int = 2
    noise: float = 2.0

    @classmethod
    def draw(cls, seed: int, bands: int, *, blur_sigma: float = 1.0, scale: int = 2, noise: float = 2.0) -> Shift:
        """The shift of `seed`: per-band parameters drawn uniformly from the module's ranges."""
        if scale < 1:
            raise ValueError(f"scale must be a whole factor >= 1, got {scale}")
        rng = np.random.default_rng([seed, 0x5817])
        gain = rng.uniform(*GAIN_RANGE, size=bands)
        gamma = np.exp(rng.uniform(*np.log(GAMMA_RANGE), size=bands))
        offset = rng.uniform(*OFFSET_RANGE, size=bands)
        return cls(seed, _rounded(gain), _rounded(gamma), _rounded(offset), float(blur_sigma), int(scale), float(noise))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Shift:
        """Back from `to_dict` (JSON turns the tuples into lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # type: ignore[arg-type]

    def describe(self, band_names: tuple[str, ...]) -> str:
        """One line for the docs: the drawn values band by band."""
        per_band = ", ".join(f"{name} gain {g:.3f} gamma {y:.3f} offset {o:+.1f}" for name, g, y, o in zip(band_names, self.gain, self.gamma, self.offset))
        return f"seed {self.seed}; blur sigma {self.blur_sigma:g} source px, {self.scale}x{self.scale} area resampling, noise {self.noise:g} DN; {per_band}"


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    """3 decimals: the values are printed in the docs, and what is printed must be what ran."""
    return tuple(round(float(v), 3) for v in values)


def shift_pixels(image: np.ndarray, shift: Shift, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) uint8 -> (C, H // scale, W // scale) uint8 (rows/columns beyond a whole block dropped)."""
    s = shift.scale
    c, h, w = image.shape
    if len(shift.gain) != c:
        raise ValueError(f"the shift has {len(shift.gain)} bands' parameters, the image {c} bands")
    soft = _blur(image.astype(np.float32), shift.blur_sigma)
    coarse = soft[:, : h // s * s, : w // s * s].reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))
    gain, gamma, offset = (np.asarray(v, dtype=np.float32)[:, None, None] for v in (shift.gain, shift.gamma, shift.offset))
    response = 255.0 * gain * np.clip(coarse / 255.0, 0.0, 1.0) ** gamma + offset
    noisy = response + rng.normal(0.0, shift.noise, size=response.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def shift_labels(mask: np.ndarray, scale: int) -> np.ndarray:
    """(H, W) -> (H // scale, W // scale): the label nearest each coarse pixel's centre."""
    start = scale // 2  # the centre of a block of `scale` pixels; for even `scale` the pixel after it
    return mask[start : mask.shape[0] // scale * scale : scale, start : mask.shape[1] // scale * scale : scale]


def _coarse_profile(profile: dict, scale: int) -> dict:
    """Same CRS and corner, pixels `scale` times larger, whole blocks only."""
    out = dict(profile)
    out.update(
        width=profile["width"] // scale,
        height=profile["height"] // scale,
        transform=profile["transform"] * Affine.scale(scale),
        driver="GTiff",
        compress="deflate",
    )
    for key in ("blockxsize", "blockysize", "tiled"):
        out.pop(key, None)
    return out


def shift_image_file(src: Path, dst: Path, shift: Shift) -> None:
    """Write the shifted copy of one image, band descriptions kept; its noise is seeded by the file name."""
    with rasterio.open(src) as ds:
        if ds.dtypes[0] != "uint8":
            raise ValueError(f"{src}: the shift is defined on uint8 bands, this file is {ds.dtypes[0]}")
        pixels, profile, descriptions = ds.read(), ds.profile, ds.descriptions
    rng = np.random.default_rng([shift.seed, zlib.crc32(src.stem.encode())])
    _write(dst, shift_pixels(pixels, shift, rng), _coarse_profile(profile, shift.scale), descriptions)


def shift_mask_file(src: Path, dst: Path, scale: int) -> None:
    with rasterio.open(src) as ds:
        mask, profile = ds.read(1), ds.profile
    _write(dst, shift_labels(mask, scale)[None], _coarse_profile(profile, scale), None)


def _write(dst: Path, data: np.ndarray, profile: dict, descriptions: tuple[str | None, ...] | None) -> None:
    with atomic_path(dst) as tmp, rasterio.open(tmp, "w", **profile) as out:
        out.write(data)
        for i, name in enumerate(descriptions or (), start=1):
            if name:
                out.set_band_description(i, name)


def shift_folder(images: list[Path], masks: dict[Path, Path] | None, dst: Path, shift: Shift, classes_yaml: Path | None) -> Path:
    """Write `dst/images` (and, with `masks`, `dst/masks` and classes.yaml) shifted; reuse a finished copy.

    A stamp with the shift and the file names is written last, so an interrupted copy is redone
    and a copy made with another shift is never reused.
    """
    stamp = {"shift": shift.to_dict(), "images": sorted(p.name for p in images), "labeled": masks is not None}
    if (dst / STAMP).is_file() and json.loads((dst / STAMP).read_text(encoding="utf-8")) == stamp:
        return dst
    if dst.exists():  # another shift or other tiles: start clean, so no file of the old copy stays behind
        shutil.rmtree(dst)
    for image in images:
        shift_image_file(image, dst / "images" / image.name, shift)
        if masks is not None:
            shift_mask_file(masks[image], dst / "masks" / image.name, shift.scale)
    if masks is not None and classes_yaml is not None:
        write_text_atomic(dst / "classes.yaml", classes_yaml.read_text(encoding="utf-8"))
    write_text_atomic(dst / STAMP, json.dumps(stamp, indent=1))
    return dst
