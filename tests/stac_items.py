"""STAC items over local GeoTIFFs, built with pystac as a user's tools would: each band a
separate single-band asset, named by eo:bands (STAC 1.0 extension) or `bands` (STAC 1.1)."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pystac
import rasterio
from pystac.extensions.eo import Band, EOExtension


def split_bands(stack: Path, folder: Path, prefix: str) -> list[tuple[Path, str]]:
    """Write each band of `stack` as its own GeoTIFF (same grid, nodata, no description)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with rasterio.open(stack) as src:
        profile = dict(src.profile, count=1)
        for index, name in enumerate(src.descriptions, start=1):
            path = folder / f"{prefix}_B{index}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(index), 1)
            written.append((path, name))
    return written


def item_over_bands(
    stack: Path,
    item_path: Path,
    item_id: str,
    *,
    stac11: bool = False,
    href_of=None,  # type: ignore[no-untyped-def]
    asset_folder: Path | None = None,
) -> Path:
    """A pystac item whose assets are the bands of `stack`, one GeoTIFF each, written to
    `item_path` with hrefs relative to it (or `href_of(path)`)."""
    folder = asset_folder or item_path.parent / "assets"
    item = pystac.Item(id=item_id, geometry=None, bbox=None, datetime=dt.datetime(2024, 5, 17, tzinfo=dt.timezone.utc), properties={})
    for path, name in split_bands(stack, folder, item_id):
        href = href_of(path) if href_of else str(path.relative_to(item_path.parent)) if path.is_relative_to(item_path.parent) else str(path)
        asset = pystac.Asset(href=href, media_type=pystac.MediaType.GEOTIFF, roles=["data"])
        item.add_asset(f"band_{name}", asset)
        if stac11:
            asset.extra_fields["bands"] = [{"name": f"B_{name}", "eo:common_name": name}]
        else:
            EOExtension.ext(asset, add_if_missing=True).bands = [Band.create(name=f"B_{name}", common_name=name)]
    item_path.parent.mkdir(parents=True, exist_ok=True)
    item_path.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
    return item_path


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP Range support, which GDAL's /vsicurl/ needs for windowed reads."""

    def send_head(self):  # type: ignore[no-untyped-def]
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start_text, _, end_text = header.removeprefix("bytes=").partition("-")
        start = int(start_text)
        end = min(int(end_text) if end_text else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(data[start : end + 1])

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # quiet test output
        pass


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve `folder` over http://127.0.0.1 with Range support; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
