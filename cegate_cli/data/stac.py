"""STAC items as scenes: an item JSON opens as one raster whose bands are the item's assets.

Users keep imagery as STAC items (a JSON file whose assets point at one GeoTIFF per band, local
or on a server), not as stacked GeoTIFFs. Rather than teach every reader about items, an item
is turned into a GDAL VRT held in memory: one band per band name, described with the canonical
name (bands.py), read windowed straight from the asset hrefs. Everything that opens a scene
(`data.raster.open_raster`) then works unchanged: bands are matched by name, pixels are read
in windows, masks are compared with the item's grid.

Which assets: every asset that names its bands (STAC 1.0 `eo:bands`, or the `bands` field of
STAC 1.1) by common name or name. Where several assets carry the same band (a single-band COG
and a "visual" RGB composite, or a COG and a JPEG 2000 copy), the single-band GeoTIFF with the
"data" role wins over a multi-band or "visual" one. Thumbnails, overviews and metadata assets are never read.

Hrefs: relative ones are resolved against the item file; http(s) through GDAL's /vsicurl/,
s3:// through /vsis3/ (GDAL's own AWS settings apply). The bands must share one CRS and one
extent; bands of a coarser resolution on that extent (Sentinel-2's 20 m bands beside its 10 m
ones) are read resampled (nearest neighbour, so no value is invented) onto the finest grid.

Outputs of an item are named from its id (`scene_name`), not from the JSON file's name.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import numpy as np
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile

from cegate_cli.data.band_names import CANONICAL_BANDS, canonical_band_name
from cegate_cli.data.blocks import check_blocks
from cegate_cli.data.gdal import gdal_detail, network_defaults, network_hint, quiet_open
from cegate_cli.errors import DataError, DataFileNotFoundError, DocumentError
from cegate_cli.infra.documents import read_json

ITEM_SUFFIX = ".json"
VSICURL_PREFIX = "/vsicurl?empty_dir=yes&url="
"""How an http(s) href is opened (see `gdal_path`)."""
SKIPPED_ROLES = frozenset({"thumbnail", "overview", "metadata"})
"""Assets with only these roles are never read: previews, not measurements."""
_NOT_RASTER_TYPES = ("application/json", "application/xml", "text/", "application/geo+json", "image/png", "image/jpeg")
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class ItemBand:
    """One band of an item: its canonical name and where its pixels are."""

    name: str
    asset: str
    href: str
    """The path GDAL opens: a local path, or /vsicurl?...&url= (/vsis3/) for a remote href."""

    @property
    def shown(self) -> str:
        """The href as the user wrote it (the URL, not GDAL's /vsicurl? form), for messages."""
        return shown_href(self.href)

    band: int
    """1-based band of the asset file."""
    nodata: float | None
    """The band's nodata value from the item's metadata (used when the file declares none)."""


@dataclass(frozen=True)
class StacItem:
    path: Path
    id: str
    datetime: str | None
    bands: tuple[ItemBand, ...]


def is_item_name(path: str | os.PathLike[str]) -> bool:
    """A name that may be a STAC item (a visible .json file); `read_item` says whether it is."""
    name = Path(path).name
    return name.lower().endswith(ITEM_SUFFIX) and not name.startswith(".")


def looks_like_item(path: Path) -> bool:
    """Whether a .json file found in a folder is a STAC item (other JSON files are not scenes)."""
    if not is_item_name(path) or not Path(path).is_file():
        return False
    try:
        data = read_json(Path(path))
    except DocumentError:
        return False
    return isinstance(data, dict) and data.get("type") == "Feature" and isinstance(data.get("assets"), dict)


def item_files(folder: Path) -> list[Path]:
    """The STAC items among the .json files of `folder`, sorted."""
    return sorted(p for p in Path(folder).iterdir() if looks_like_item(p))


def scene_name(path: str | os.PathLike[str]) -> str:
    """The name a scene's outputs carry: the item id for a STAC item, else the file's stem."""
    path = Path(path)
    if is_item_name(path):
        try:
            return _safe_name(read_item(path).id)
        except DataError:
            pass  # not an item: it fails when opened, with the reason
    return path.stem


def _safe_name(item_id: str) -> str:
    """An item id as a file name: characters no file system takes (/, \\, :, ...) become _."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", item_id).strip(" .") or "item"


def read_item(path: str | os.PathLike[str]) -> StacItem:
    """Parse a STAC item JSON (standard library only) and choose one asset band per band name."""
    path = Path(path)
    if not os.path.lexists(path):
        raise DataFileNotFoundError(f"{path}: no such file; check the path")
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise DataError(f"{exc}; give STAC item JSON files as a STAC API returns them") from None
    if not isinstance(data, dict) or data.get("type") != "Feature" or not isinstance(data.get("assets"), dict):
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f'{path}: not a STAC item (type {kind!r}, expected a "Feature" with "assets"); give item JSON files, not a catalog, collection or search result'
        )
    item_id = data.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise DataError(f'{path}: the STAC item has no "id"; every item needs one (outputs are named from it)')
    bands = _choose_bands(path, data["assets"])
    if not bands:
        raise DataError(
            f"{path}: no asset of item {item_id!r} names its bands (eo:bands or bands, with a common_name or name); "
            "cegate picks assets by band name: add eo:bands to the item's assets"
        )
    properties = data.get("properties") if isinstance(data.get("properties"), dict) else {}
    when = properties.get("datetime") or properties.get("start_datetime")
    return StacItem(path, item_id, str(when) if when else None, tuple(bands))


def _choose_bands(path: Path, assets: dict[str, Any]) -> list[ItemBand]:
    """One band per name, from the best asset that carries it, in spectral order."""
    candidates: list[tuple[tuple[int, int, int, int], ItemBand]] = []
    for order, (key, asset) in enumerate(assets.items()):
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        roles = {str(r).lower() for r in asset.get("roles") or () if isinstance(r, str)}
        media = str(asset.get("type") or "").lower()
        if (roles and roles <= SKIPPED_ROLES) or media.startswith(_NOT_RASTER_TYPES):
            continue
        entries = _band_entries(asset)
        raster_bands = asset.get("raster:bands") if isinstance(asset.get("raster:bands"), list) else []
        rank = (0 if "tiff" in media or not media else 1, 0 if len(entries) == 1 else 1, 0 if "data" in roles else 1, order)
        for index, entry in enumerate(entries):
            name = _band_name(entry)
            if name is None:
                continue
            extra = raster_bands[index] if index < len(raster_bands) and isinstance(raster_bands[index], dict) else {}
            nodata = _number(entry.get("nodata", extra.get("nodata")))
            candidates.append((rank, ItemBand(name, key, gdal_path(asset["href"], path), index + 1, nodata)))
    chosen: dict[str, tuple[tuple[int, int, int, int], ItemBand]] = {}
    for rank, band in candidates:
        if band.name not in chosen or rank < chosen[band.name][0]:
            chosen[band.name] = (rank, band)

    def spectral(band: ItemBand) -> tuple[int, int]:
        known = band.name in CANONICAL_BANDS
        return (CANONICAL_BANDS.index(band.name) if known else len(CANONICAL_BANDS), chosen[band.name][0][3])

    return sorted((band for _, band in chosen.values()), key=spectral)


def _band_entries(asset: dict[str, Any]) -> list[dict[str, Any]]:
    for field in ("bands", "eo:bands"):  # STAC 1.1 first, then the eo extension of STAC 1.0
        entries = asset.get(field)
        if isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries):
            return entries
    return []


def _band_name(entry: dict[str, Any]) -> str | None:
    for key in ("eo:common_name", "common_name", "name"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return canonical_band_name(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf"):
        return float(value)
    return None


def shown_href(path: str) -> str:
    """An asset path as the user gave it: the URL of a /vsicurl?...&url= path, else the path."""
    return unquote(path[len(VSICURL_PREFIX) :]) if path.startswith(VSICURL_PREFIX) else path


def gdal_path(href: str, item_path: Path) -> str:
    """Where GDAL finds an asset: relative hrefs against the item file, URLs through /vsi*/."""
    if href.startswith("/vsi"):
        return href
    parsed = urlparse(href)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        # empty_dir: GDAL neither lists the URL's "folder" nor asks for sidecar files (.aux.xml,
        # .msk, .ovr) one request each; set for this URL alone, so local files read in the same
        # process still find their sidecars (a global GDAL_DISABLE_READDIR_ON_OPEN hid them).
        return f"{VSICURL_PREFIX}{quote(href, safe='')}"
    if scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    if scheme == "file":
        return unquote(parsed.path)
    if len(scheme) > 1:  # one letter is a Windows drive
        raise DataError(f"{item_path}: asset href {href!r} uses {scheme}://, which cegate cannot read; use a local path, http(s):// or s3://")
    local = Path(unquote(href))
    return os.path.normpath(local if local.is_absolute() else Path(item_path).resolve().parent / local)


@dataclass(frozen=True)
class _Grid:
    width: int
    height: int
    transform: Any
    crs: Any
    count: int
    dtypes: tuple[str, ...]
    nodata: tuple[float | None, ...]
    blocks: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        return f"{self.crs or 'no CRS'}, {self.width} x {self.height} px of {abs(self.transform.a):g}"


def _probe(item: StacItem, band: ItemBand) -> _Grid:
    """The grid of one asset file (opened once, closed again)."""
    where = f"{item.path}: asset {band.asset!r} ({band.shown})"
    if not band.href.startswith("/vsi") and not os.path.isfile(band.href):
        raise DataFileNotFoundError(f"{where}: no such file; fix the href or put the file there")
    try:
        with quiet_open(band.href) as ds:
            check_blocks(ds, where)
            return _Grid(
                ds.width, ds.height, ds.transform, ds.crs, ds.count, tuple(ds.dtypes), tuple(ds.nodatavals), tuple(tuple(shape) for shape in ds.block_shapes)
            )
    except (RasterioError, OSError) as exc:  # the errors data/raster.py's open_raster catches
        detail = gdal_detail(exc)
        remote = band.href.startswith("/vsi")
        hint = (network_hint(detail) or "check the URL and the connection") if remote else "is it a complete GeoTIFF?"
        raise DataError(f"{where}: cannot be read as a raster ({detail}); {hint}") from None


def item_vrt(item: StacItem) -> str:
    """The VRT XML that stacks the item's bands on one grid (see the module docstring)."""
    grids: dict[str, _Grid] = {}
    for band in item.bands:
        if band.href not in grids:
            grids[band.href] = _probe(item, band)
        if band.band > grids[band.href].count:
            raise DataError(
                f"{item.path}: asset {band.asset!r} lists band {band.band} ({band.name}) but its file has "
                f"{grids[band.href].count} band(s); fix the item's eo:bands"
            )
    target = min(grids.values(), key=lambda g: abs(g.transform.a))
    _check_one_grid(item, target, grids)
    dtype = np.result_type(*[np.dtype(grids[b.href].dtypes[b.band - 1]) for b in item.bands])
    root = ET.Element("VRTDataset", rasterXSize=str(target.width), rasterYSize=str(target.height))
    if target.crs is not None:
        ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = target.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in target.transform.to_gdal())
    _metadata(root, {"STAC_ITEM": item.id, **({"ACQUISITIONDATETIME": item.datetime} if item.datetime else {})})
    for number, band in enumerate(item.bands, start=1):
        grid = grids[band.href]
        element = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype.name], band=str(number))
        ET.SubElement(element, "Description").text = band.name
        nodata = grid.nodata[band.band - 1]
        nodata = band.nodata if nodata is None else nodata
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = _nodata_text(nodata)
        _metadata(element, {"STAC_ASSET": band.asset})
        source = ET.SubElement(element, "SimpleSource", resampling="nearest")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = band.href
        ET.SubElement(source, "SourceBand").text = str(band.band)
        rows, columns = grid.blocks[band.band - 1]
        # Declared here, GDAL opens the asset only when its pixels are read (one less round trip
        # per remote asset each time the item is opened).
        ET.SubElement(
            source,
            "SourceProperties",
            RasterXSize=str(grid.width),
            RasterYSize=str(grid.height),
            DataType=_GDAL_TYPES[np.dtype(grid.dtypes[band.band - 1]).name],
            BlockXSize=str(columns),
            BlockYSize=str(rows),
        )
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(grid.width), ySize=str(grid.height))
        ET.SubElement(source, "DstRect", xOff="0", yOff="0", xSize=str(target.width), ySize=str(target.height))
    return ET.tostring(root, encoding="unicode")


def _metadata(parent: ET.Element, items: dict[str, str]) -> None:
    block = ET.SubElement(parent, "Metadata")
    for key, value in items.items():
        ET.SubElement(block, "MDI", key=key).text = value


def _nodata_text(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_one_grid(item: StacItem, target: _Grid, grids: dict[str, _Grid]) -> None:
    """One CRS and one extent for all bands; a coarser resolution on that extent is resampled."""
    pixel = abs(target.transform.a)
    tolerance = 0.01 * pixel
    names = {band.href: band.asset for band in item.bands}
    for href, grid in grids.items():
        same_crs = grid.crs == target.crs
        rotated = any(abs(g.transform.b) > 0 or abs(g.transform.d) > 0 for g in (grid, target))
        edges = (
            (grid.transform.c, target.transform.c),
            (grid.transform.f, target.transform.f),
            (grid.transform.c + grid.width * grid.transform.a, target.transform.c + target.width * target.transform.a),
            (grid.transform.f + grid.height * grid.transform.e, target.transform.f + target.height * target.transform.e),
        )
        same_extent = all(abs(a - b) <= tolerance for a, b in edges)
        same_pixels = grid.transform.almost_equals(target.transform) and (grid.width, grid.height) == (target.width, target.height)
        if same_crs and same_extent and (same_pixels or not rotated):
            continue
        reference = next(h for h, g in grids.items() if g is target)
        raise DataError(
            f"{item.path}: assets {names[reference]!r} ({target.describe()}) and {names[href]!r} ({grid.describe()}) "
            f"are not on one grid (same CRS and extent); resample them onto one grid (e.g. gdalwarp) "
            f"or remove the odd asset from the item"
        )


_VRTS: dict[tuple[str, int, int], MemoryFile] = {}
_VRTS_LOCK = threading.Lock()
_FAILED: dict[tuple[str, int, int], DataError] = {}
"""Items with remote assets that could not be opened, and why: asked again in the same process (predict
opens every scene for its cost estimate, then again to map it), they fail at once instead of
waiting for a silent server a second time. A changed item file is a new key."""


def open_item(path: str | os.PathLike[str]) -> Any:
    """A rasterio dataset of the item's bands (a VRT kept in memory, built once per process).

    Rebuilt when the item file changes. The in-memory file survives a fork, so a child process
    reading the same item finds it without opening the assets again. Remote assets are read with
    bounded waits (data/gdal.py's NETWORK_DEFAULTS).
    """
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise DataFileNotFoundError(f"{path}: no such file; check the path") from exc
    key = (os.path.realpath(path), status.st_mtime_ns, status.st_size)
    with _VRTS_LOCK:
        memory = _VRTS.get(key)
    if memory is None:
        item = read_item(path)
        remote = any(band.href.startswith("/vsi") for band in item.bands)
        if remote:
            network_defaults()  # bounded waits and retries, unless the user set their own
        with _VRTS_LOCK:
            failed = _FAILED.get(key)
        if failed is not None:
            raise type(failed)(str(failed))
        try:
            xml = item_vrt(item)
        except DataError as exc:
            if remote:
                with _VRTS_LOCK:
                    _FAILED[key] = exc
            raise
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        memory = MemoryFile(xml.encode("utf-8"), dirname=f"cegate-stac-{digest}", filename=f"{_safe_name(item.id)}.vrt")
        with _VRTS_LOCK:
            memory = _VRTS.setdefault(key, memory)
    return quiet_open(memory.name)
