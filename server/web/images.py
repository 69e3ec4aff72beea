"""Small raster pictures (video frames, receptive-field maps) as inline PNG ``<img>`` tags (numpy + zlib only).

The pages' Content-Security-Policy allows images from ``data:`` URIs only, so a picture travels inside the page.
PNGs are written at the array's own resolution (a 36 x 64 frame is ~3 kB) and scaled by the browser with
nearest-neighbour sampling (``image-rendering: pixelated``).
"""

from __future__ import annotations

import base64
import struct
import zlib
from html import escape

import numpy as np


def png(rgb: np.ndarray) -> bytes:
    """PNG file bytes of an (H, W, 3) uint8 image (8-bit truecolour, no interlace)."""
    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(h))  # filter type 0 per scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def grey(frame: np.ndarray, lo: float = 0.0, hi: float = 255.0) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 grey levels, lo..hi mapped to black..white."""
    v = (np.asarray(frame, np.float64) - lo) / max(hi - lo, 1e-12)
    g = np.clip(np.nan_to_num(v) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def diverging(values: np.ndarray) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8: white at 0, red for positive, blue for negative, symmetric scale."""
    v = np.nan_to_num(np.asarray(values, np.float64))
    v = v / max(float(np.abs(v).max()), 1e-12)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    red = np.array([178.0, 24.0, 43.0])
    blue = np.array([33.0, 102.0, 172.0])
    white = np.array([255.0, 255.0, 255.0])
    rgb = white + pos[..., None] * (red - white) + neg[..., None] * (blue - white)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def img(rgb: np.ndarray, alt: str, scale: int = 4, css_class: str = "picture") -> str:
    """An ``<img>`` element showing `rgb` (H, W, 3) at `scale` screen pixels per image pixel."""
    h, w = rgb.shape[:2]
    uri = "data:image/png;base64," + base64.b64encode(png(rgb)).decode("ascii")
    return (
        f'<img class="{escape(css_class)}" src="{uri}" width="{w * scale}" height="{h * scale}" '
        f'alt="{escape(alt)}" title="{escape(alt)}" style="image-rendering: pixelated">'
    )
