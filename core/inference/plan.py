"""Cutting a prediction into Dask tasks: chunks of neighbouring dense tiles.

One task per tile costs a worker a read, a normalisation and a model call per tile plus Dask's per-task overhead
on the driver (client + scheduler, ~1-3 ms CPU per task on this machine). A chunk of ``k x k`` neighbouring tiles is
read and normalised once as one box (the tiles overlap, so the box holds fewer pixels than the tiles) and predicted
in one batched model call; its read box stays at most ``max(chunk_px, tile)`` pixels a side, so a worker's memory
does not depend on the size of the raster.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.geo.windows import PixelWindow

CHUNK_PX = 512
"""Default largest side (label pixels) of the box a dense chunk reads."""


def tiles_per_side(tile: int, core: int, chunk_px: int = CHUNK_PX) -> int:
    """``k``: tiles per chunk side so the chunk's read box (``tile + (k - 1) * core`` px) is <= ``chunk_px``."""
    if tile < 1 or core < 1:
        raise ValueError(f"tile {tile} and core {core} must be >= 1 px")
    return max(1, (chunk_px - tile) // core + 1)


def group_pairs(
    pairs: Sequence[tuple[PixelWindow, PixelWindow]], origin: tuple[int, int], core: int, k: int
) -> list[list[tuple[PixelWindow, PixelWindow]]]:
    """Group ``(read, core)`` pairs of a regular core grid into chunks of up to ``k x k`` neighbouring tiles.

    Args:
        pairs: the tiles; their cores lie on the grid of ``core`` px cells starting at ``origin`` (row, col).
        origin: top-left label pixel of the core grid.
        core: core side in pixels.
        k: tiles per chunk side.

    Returns:
        Chunks in row-major order; tiles keep their order inside a chunk. Chunks at the ragged edge, or where an
        AOI dropped tiles, hold fewer.
    """
    chunks: dict[tuple[int, int], list[tuple[PixelWindow, PixelWindow]]] = {}
    for pair in pairs:
        c = pair[1]
        key = ((c.row_off - origin[0]) // (core * k), (c.col_off - origin[1]) // (core * k))
        chunks.setdefault(key, []).append(pair)
    return [chunks[key] for key in sorted(chunks)]
