"""The one call that opens a raster for reading, below everything that checks what it opened.

data/raster.py owns opening input rasters (the file checks, the messages, the valid-pixel rule);
a STAC item (data/stac.py) is opened by raster.py and has to open its asset files and its
in-memory VRT itself. Both come here, so there is one `rasterio.open` for reading in cegate and
one way the GDAL reason of a failure reaches the user.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning


def quiet_open(source: str | os.PathLike[str]) -> Any:
    """rasterio.open (read mode) without its NotGeoreferencedWarning reaching the user's terminal.

    A file without a CRS or transform is fine for most of cegate; where it matters (predicting
    a scene, pairing a mask, vectorising) cegate says so in its own words, once per file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(source)


def gdal_detail(exc: BaseException) -> str:
    """rasterio's read errors say "see previous exception"; the GDAL reason is in the cause."""
    cause = exc.__cause__
    return f"{exc} {cause}" if cause is not None and str(cause) not in str(exc) else str(exc)


NETWORK_DEFAULTS: dict[str, str] = {
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_MAX_RETRY": "2",
    "GDAL_HTTP_RETRY_DELAY": "1",
}
"""GDAL's network settings for remote assets (seconds to connect, seconds per request, retries
after a failed request, seconds before the first retry, doubled for each next one).

GDAL's own defaults wait without end on a server that accepts the connection and never answers,
so a STAC item with such an href hung `predict` until it was killed. With these a request gives
up after at most 3 tries of 30 s. A variable set in the user's environment wins over these.
"""


def network_defaults() -> None:
    """Put NETWORK_DEFAULTS into the environment GDAL reads, where the user has not set them."""
    for name, value in NETWORK_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _setting(name: str) -> float:
    try:
        return float(os.environ.get(name) or NETWORK_DEFAULTS[name])
    except ValueError:
        return float(NETWORK_DEFAULTS[name])


def network_hint(detail: str) -> str | None:
    """What to do about a failed remote read, from GDAL's reason (None when it is not a network failure)."""
    lowered = detail.lower()
    if "timed out" in lowered or "timeout" in lowered:
        timeout, retries = _setting("GDAL_HTTP_TIMEOUT"), int(_setting("GDAL_HTTP_MAX_RETRY"))
        return (
            f"the server did not answer within {timeout:g} s ({retries + 1} tries); check the network, or allow "
            f"longer with the GDAL variable GDAL_HTTP_TIMEOUT (seconds, e.g. GDAL_HTTP_TIMEOUT={max(120, int(timeout) * 4)})"
        )
    if "curl error" in lowered or "http response code" in lowered or "could not resolve" in lowered:
        return "check the URL and the network (GDAL_HTTP_MAX_RETRY sets how often a failed request is tried again)"
    return None
