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


DEFAULT_TILE_OVERLAPS = 6
"""With exact seams and no tile size given, a dense tile is about this many overlaps wide: its core is then about
2/3 of its side (44 % of its pixels) whatever the receptive field."""
CONTEXT_WARN_SHARE = 0.75
"""Pre-flight warns when more than this share of a dense prediction's model computation goes to context (the
model then computes over 4 pixels per pixel of the map)."""
CROP_MIN_TILE = 256
"""Smallest prediction tile of a pipeline with ``seams="crop"`` (label pixels)."""


def default_tile(sample_side: int, overlap: int, align: int, exact: bool, aoi_side: int) -> int:
    """The prediction tile side when none is given (label pixels, a multiple of ``align``).

    The training sample side; with exact seams at least :data:`DEFAULT_TILE_OVERLAPS` overlaps, but no larger than
    one tile holding the whole AOI (``aoi_side``: the AOI bounding box's longer side).
    """
    tile = sample_side
    if exact:
        tile = max(tile, -(-(DEFAULT_TILE_OVERLAPS * overlap + align - 1) // align) * align)
        whole = -(-(aoi_side + 2 * overlap + align - 1) // align) * align
        tile = max(min(tile, whole), align)
    return tile


def crop_tile(sample_side: int, overlap: int, align: int) -> int:
    """A pipeline's prediction tile with ``seams="crop"``: at least :data:`CROP_MIN_TILE` px, the training sample
    side and 4 overlaps, rounded up to a multiple of ``align``."""
    tile = max(CROP_MIN_TILE, sample_side, 4 * overlap)
    return -(-tile // align) * align


def context_share(tile: int, overlap: int, align: int = 1) -> float:
    """Share of a dense prediction's model computation spent on context: ``1 - core² / tile²``.

    A ``tile`` x ``tile`` read window keeps a core of ``tile - 2 x overlap - (align - 1)`` px a side (the core
    blocks of :func:`core.inference.predict.plan_windows`); the model computes every pixel of the tile, so
    ``tile² / core²`` pixels per pixel of the map. 1.0 when the overlap leaves no core. Tiles cut by the scene
    edge are not counted.
    """
    if tile < 1 or overlap < 0 or align < 1:
        raise ValueError(f"tile {tile}, overlap {overlap} and align {align} must be >= 1, >= 0 and >= 1")
    core = tile - 2 * overlap - (align - 1)
    return 1.0 if core < 1 else 1.0 - (core * core) / (tile * tile)


def context_check(tile: int, overlap: int, align: int, suggested: int | None) -> tuple[str, str]:
    """``(level, message)`` pre-flight states for a dense prediction: ``"warning"`` above
    :data:`CONTEXT_WARN_SHARE`, suggesting ``suggested`` (the default tile side; None: the tile is derived, so a
    smaller overlap), else ``"info"``."""
    share = context_share(tile, overlap, align)
    core = tile - 2 * overlap - (align - 1)
    text = (
        f"prediction: {share:.0%} of the model's computation is context ({tile} px tiles, {overlap} px overlap "
        f"each side"
        + (
            f", a {core} px core: the model computes {tile * tile / (core * core):.1f} px per map pixel)"
            if core > 0
            else ")"
        )
    )
    if share <= CONTEXT_WARN_SHARE:
        return "info", text
    if suggested is None:
        return (
            "warning",
            f"{text}; above {CONTEXT_WARN_SHARE:.0%}, the map takes several times longer than it needs to: use a smaller overlap",
        )
    better = context_share(suggested, overlap, align)
    return "warning", (
        f"{text}; above {CONTEXT_WARN_SHARE:.0%}, the map takes several times longer than it needs to: use the "
        f"default tile size ({suggested} px, {better:.0%} context: leave tile_size empty), or seams 'crop' with "
        "a smaller overlap"
    )
