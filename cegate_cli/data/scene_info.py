"""What a scene's metadata says about where and when it was taken: pixel size, date, location.

Some backbones describe the scene they see (Galileo embeds pixel size and month,
backbone/galileo_backbone.py), so training reads these facts from its images and predict from
each scene it maps (`SceneInfo`, handed to `BlockBackbone.scene_conditions`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from typing import Any

_METRES_PER_DEGREE = 111_320.0  # along a meridian, and along the equator; parallels shrink by cos(latitude)
_DATE_TAGS = ("ACQUISITIONDATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATETIME", "TIFFTAG_DATETIME")
_DATE = re.compile(r"(\d{4})[-:/]?(\d{2})[-:/]?(\d{2})")


def ground_sample_distance(ds: Any) -> float | None:
    """The pixel size in metres (the mean of x and y), converted at the scene's centre for a
    geographic CRS; None without georeferencing."""
    if ds.crs is None or ds.transform.is_identity:
        return None
    x_size, y_size = abs(ds.transform.a), abs(ds.transform.e)
    if ds.crs.is_geographic:
        latitude = (ds.bounds.top + ds.bounds.bottom) / 2
        x_size *= _METRES_PER_DEGREE * math.cos(math.radians(latitude))
        y_size *= _METRES_PER_DEGREE
    else:
        x_size *= ds.crs.linear_units_factor[1]
        y_size *= ds.crs.linear_units_factor[1]
    return (x_size + y_size) / 2


@dataclass(frozen=True)
class SceneInfo:
    """One scene's facts as its metadata gives them; None where it does not."""

    gsd_m: float | None = None
    """Pixel size in metres (`ground_sample_distance`)."""
    month: int | None = None
    """Month of acquisition, 0 = January (`acquisition_month`)."""
    date: _dt.date | None = None
    """Day of acquisition (`acquisition_date`)."""
    centre_lonlat: tuple[float, float] | None = None
    """Longitude and latitude (WGS 84 degrees) of the scene's centre (`centre_lonlat`)."""


def read_scene_info(ds: Any) -> SceneInfo:
    """Every fact `SceneInfo` holds, from an open dataset."""
    return SceneInfo(ground_sample_distance(ds), acquisition_month(ds), acquisition_date(ds), centre_lonlat(ds))


def acquisition_month(ds: Any) -> int | None:
    """The month (0 = January) of the scene's acquisition date when a tag gives one: GDAL's
    TIFFTAG_DATETIME or a common product tag (ACQUISITIONDATETIME, DATE_ACQUIRED, ...)."""
    tags = {key.upper(): value for key, value in ds.tags().items()}
    for key in _DATE_TAGS:
        match = _DATE.search(tags.get(key, ""))
        if match and 1 <= int(match.group(2)) <= 12:
            return int(match.group(2)) - 1
    return None


def acquisition_date(ds: Any) -> _dt.date | None:
    """The day of the scene's acquisition from the same tags as `acquisition_month`; None when
    no tag holds a real calendar date."""
    tags = {key.upper(): value for key, value in ds.tags().items()}
    for key in _DATE_TAGS:
        match = _DATE.search(tags.get(key, ""))
        if match:
            try:
                return _dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                continue
    return None


def centre_lonlat(ds: Any) -> tuple[float, float] | None:
    """Longitude and latitude (WGS 84) of the scene's centre; None without georeferencing."""
    if ds.crs is None or ds.transform.is_identity:
        return None
    from rasterio.warp import transform

    x = (ds.bounds.left + ds.bounds.right) / 2
    y = (ds.bounds.top + ds.bounds.bottom) / 2
    lons, lats = transform(ds.crs, "EPSG:4326", [x], [y])
    return float(lons[0]), float(lats[0])
