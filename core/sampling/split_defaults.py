"""Spatial-split geometry that fits the job: block size and buffer derived from the sample size and the AOI.

A spatial split deals square blocks of the label grid to train / val / test (:mod:`core.sampling.splits`); samples
live in each block's *core* (the block shrunk by half the buffer on every side facing another split), and a tile
never crosses a block. So a block must be at least ``size + buffer`` pixels wide to hold one sample, and the AOI
must hold several blocks for every split to get one. :func:`default_split_geometry` picks the number of blocks
per axis of the AOI's bounding box so that each core holds about 2 x 2 samples (blocks of at least 64 px where
the AOI allows), with at least 2 x 2 blocks, and
sizes the blocks to divide the AOI evenly (no thin slivers at its far edges).

The buffer keeps splits apart: for patches one patch (two patches of different splits never share a pixel); for
tiles half a tile (tiles never cross a block, so they never share a pixel whatever the buffer; the buffer only
adds distance against spatial autocorrelation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.configs import SplitConfig
from core.errors import ConfigError

MIN_BLOCKS_PER_AXIS = 2
SAMPLES_PER_CORE_AXIS = 2
MIN_PREFERRED_BLOCK = 64
"""Blocks narrower than this are not preferred: neighbouring pixels are alike, so tiny blocks split little."""


@dataclass(frozen=True)
class SplitGeometry:
    """Block side and buffer of a spatial split, in label-grid pixels."""

    block_size: int
    buffer: int


def default_buffer(size: int, mode: str) -> int:
    """The split buffer for samples of ``size`` pixels in store ``mode`` (``"tiles"`` or ``"patches"``)."""
    return size // 2 if mode == "tiles" else size


def default_split_geometry(
    size: int, mode: str, aoi_shape: tuple[int, int], buffer: int | None = None, align: int = 1
) -> SplitGeometry:
    """Block size (and buffer, unless given) for ``size``-pixel samples over an AOI of ``aoi_shape`` (rows, cols).

    ``align``: blocks and half-buffers are multiples of it, so tiles in block cores start on pixels of every
    coarser modality's grid (the grid ratio, e.g. 4 for an RGB label grid over a 4x coarser hyperspectral one).

    Raises:
        ConfigError: the AOI cannot hold 2 x 2 blocks of ``size + buffer`` pixels; the message says which sample
            size or AOI would fit.
    """
    buf = default_buffer(size, mode) if buffer is None else buffer
    if buffer is None and align > 1:
        buf = _round_up(buf, 2 * align)
    side = min(aoi_shape)
    smallest = size + buf  # one sample per core even when every side faces another split
    preferred = max(MIN_PREFERRED_BLOCK, SAMPLES_PER_CORE_AXIS * size + buf)
    n = max(MIN_BLOCKS_PER_AXIS, math.floor(side / preferred + 0.5))
    block = _round_up(math.ceil(side / n), align)
    if block < smallest:
        n = max(MIN_BLOCKS_PER_AXIS, side // smallest)
        block = _round_up(math.ceil(side / n), align)
    if block < smallest:
        fit = largest_fitting_size(side, mode)
        hint = f"use samples of at most {fit} px" if fit else "draw a larger area of interest"
        raise ConfigError(
            f"an area of interest {aoi_shape[0]} x {aoi_shape[1]} px cannot hold 2 x 2 split blocks for "
            f"{size} px samples (each block needs {smallest} px: the sample plus a {buf} px buffer); "
            f"{hint}, or use a date split"
        )
    return SplitGeometry(block, buf)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def largest_fitting_size(side: int, mode: str, candidates: tuple[int, ...] = (256, 128, 64, 32, 16, 8)) -> int | None:
    """The largest of ``candidates`` (tile sides; for patches the odd size below each) whose 2 x 2 blocks fit in an
    AOI whose short side is ``side`` pixels; None when none fits."""
    for c in candidates:
        size = c if mode == "tiles" else c + 1
        if MIN_BLOCKS_PER_AXIS * (size + default_buffer(size, mode)) <= side:
            return size
    return None


def resolve_split(split: SplitConfig, size: int, mode: str, aoi_shape: tuple[int, int], align: int = 1) -> SplitConfig:
    """``split`` with a derived block size and buffer where the block size is not given (spatial splits only).

    A given block size is kept as it is, with its buffer (None: one patch / tile, as before derived sizes existed).
    """
    if split.method != "spatial" or split.block_size is not None:
        return split
    geometry = default_split_geometry(size, mode, aoi_shape, split.buffer, align)
    return split.model_copy(update={"block_size": geometry.block_size, "buffer": geometry.buffer})


def candidate_geometries(
    size: int, mode: str, aoi_shape: tuple[int, int], buffer: int | None = None, align: int = 1, extra: int = 2
) -> list[SplitGeometry]:
    """The default geometry, then up to ``extra`` with one and two more blocks per axis (smaller blocks mix the
    classes of a small AOI better), each still holding a sample per core.

    Raises:
        ConfigError: as :func:`default_split_geometry`.
    """
    first = default_split_geometry(size, mode, aoi_shape, buffer, align)
    side = min(aoi_shape)
    smallest = size + first.buffer
    out = [first]
    n = math.ceil(side / first.block_size)
    for k in range(1, extra + 1):
        block = _round_up(math.ceil(side / (n + k)), align)
        if block >= smallest and block < out[-1].block_size:
            out.append(SplitGeometry(block, first.buffer))
    return out
