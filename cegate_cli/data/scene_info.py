"""What a scene's metadata says about where and when it was taken: pixel size and month.

Galileo's positions and month embedding describe the scene (backbone/galileo_backbone.py), so
training reads them from its images and predict from each scene it maps.
"""

from __future__ import annotations

import math
import re
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


def acquisition_month(ds: Any) -> int | None:
    """The month (0 = January) of the scene's acquisition date when a tag gives one: GDAL's
    TIFFTAG_DATETIME or a common product tag (ACQUISITIONDATETIME, DATE_ACQUIRED, ...)."""
    tags = {key.upper(): value for key, value in ds.tags().items()}
    for key in _DATE_TAGS:
        match = _DATE.search(tags.get(key, ""))
        if match and 1 <= int(match.group(2)) <= 12:
            return int(match.group(2)) - 1
    return None
