"""A minimal PNG encoder (RGB or RGBA, 8 bits), so the HTML report can inline images.

Pillow is not a dependency of cegate and the report draws a handful of small previews, so the
few lines of the PNG format (signature, IHDR, one zlib-compressed IDAT, IEND; no filtering)
are written here instead.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {3: 2, 4: 6}  # channels -> PNG colour type (truecolour, truecolour with alpha)


def png_bytes(pixels: np.ndarray, level: int = 6) -> bytes:
    """Encode an (h, w, 3) or (h, w, 4) uint8 array as PNG."""
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPES or pixels.dtype != np.uint8:
        raise ValueError(f"png_bytes needs an (h, w, 3|4) uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    if height < 1 or width < 1:
        raise ValueError(f"png_bytes needs at least one pixel, got {width} x {height}")
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)  # a leading 0 per row: filter "none"
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b"")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
