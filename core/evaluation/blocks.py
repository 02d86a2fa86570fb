"""Block-wise reading of a map: the windows every pass over a map uses, in one fixed order.

Tiled maps are read tile by tile; strip-organised maps (blocks as wide as the map, often 1-16 rows) are read in
runs of whole strips of about ``target_pixels`` pixels, so a pass makes few reads while memory stays bounded.
Passes that must agree on pixel order (counting, then resolving pixel ordinals) use the same windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rasterio.windows import Window

TARGET_PIXELS = 1 << 22  # ~4 Mpixels (4 MiB of uint8) per read


def map_windows(src: Any, target_pixels: int = TARGET_PIXELS) -> list[Window]:
    """Windows covering band 1 of the open dataset ``src``, in row-major block order.

    Args:
        src: an open rasterio dataset.
        target_pixels: size of a merged run of strips, in pixels.
    """
    block_h, block_w = src.block_shapes[0]
    if block_w < src.width:
        return [w for _, w in src.block_windows(1)]
    rows = max(block_h, (max(target_pixels // max(src.width, 1), 1) // block_h) * block_h)
    return [Window(0, r, src.width, min(rows, src.height - r)) for r in range(0, src.height, rows)]


def iter_blocks(src: Any, target_pixels: int = TARGET_PIXELS) -> Iterator[tuple[Window, Any]]:
    """``(window, band-1 array)`` for each window of :func:`map_windows`."""
    for win in map_windows(src, target_pixels):
        yield win, src.read(1, window=win)
