"""Train / validation / test splits that keep neighbouring pixels out of different splits.

Spatial split: the label grid is cut into disjoint square blocks of ``block_size`` pixels, with a block corner at the
AOI's top-left (so blocks sized to the AOI divide it evenly); the blocks that touch the
AOI are shuffled with ``seed`` and dealt to train / val / test by ``fractions`` (of blocks). Each block's *core*
is the block shrunk by ``ceil(buffer / 2)`` pixels on every side that faces a block of another split (side or
diagonal neighbour), so cores of different splits are at least ``buffer`` pixels apart. Samples live only in cores:
a patch centre must lie in a core, a tile must lie entirely inside one core (tiles never cross blocks). With the
default buffer (one patch / tile), two patches of different splits never share a pixel. Never random pixels.

Date split: the ``test_date`` acquisition is held out for testing, ``val_date`` (optional) for validation, every
other date is training data.

Both return a JSON-able *split record* stored in the sample store's attrs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.configs import SplitConfig
from core.errors import ConfigError
from core.geo.windows import PixelWindow, block_grid, sliding_windows

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SpatialSplit:
    """Blocks of the label grid, their split and their core (where samples may lie).

    Attributes:
        height, width: label grid size in pixels.
        block_size, buffer: in label-grid pixels.
        blocks: every block of the grid, row-major.
        assignment: split name per block (``None``: block outside the AOI, unused).
        cores: usable part of each block (``None`` when the buffer eats it or the block is unused).
    """

    height: int
    width: int
    block_size: int
    buffer: int
    blocks: tuple[PixelWindow, ...]
    assignment: tuple[str | None, ...]
    cores: tuple[PixelWindow | None, ...]

    def record(self, seed: int, fractions: tuple[float, float, float]) -> dict[str, Any]:
        """The JSON split record: method, block size, buffer and each used block's window and split."""
        return {
            "method": "spatial",
            "block_size": self.block_size,
            "buffer": self.buffer,
            "seed": seed,
            "fractions": list(fractions),
            "blocks": [
                [*b.as_tuple(), s, list(c.as_tuple()) if c else None]
                for b, s, c in zip(self.blocks, self.assignment, self.cores, strict=True)
                if s is not None
            ],
        }

    def split_codes(self, window: PixelWindow) -> np.ndarray:
        """Per-pixel split index of ``window``: 0 train, 1 val, 2 test, -1 buffer / unused. Shape (h, w), int8."""
        out = np.full(window.shape, -1, dtype=np.int8)
        for core, split in zip(self.cores, self.assignment, strict=True):
            if core is None or split is None:
                continue
            inter = core.intersection(window)
            if inter is not None:
                out[
                    inter.row_off - window.row_off : inter.row_end - window.row_off,
                    inter.col_off - window.col_off : inter.col_end - window.col_off,
                ] = SPLITS.index(split)
        return out

    def tiles(self, area: PixelWindow, tile_size: int, stride: int | None) -> list[tuple[PixelWindow, str]]:
        """Tile windows (with their split) over ``area``, each inside one block core; cores smaller than a tile
        give no tile (a tile never crosses a block boundary or the buffer)."""
        out: list[tuple[PixelWindow, str]] = []
        for core, split in zip(self.cores, self.assignment, strict=True):
            if core is None or split is None or core.height < tile_size or core.width < tile_size:
                continue
            inter = core.intersection(area)
            if inter is None:
                continue
            out.extend((w, split) for w in sliding_windows(inter, tile_size, stride, bounds=core))
        return out


def _deal(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> list[str]:
    counts = [int(round(n * f)) for f in fractions]
    for i, f in enumerate(fractions):  # a split asked for gets at least one block when there are enough
        if f > 0 and counts[i] == 0 and n >= sum(1 for x in fractions if x > 0):
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)
    labels = [s for s, k in zip(SPLITS, counts, strict=True) for _ in range(k)]
    order = rng.permutation(n)
    return [labels[i] for i in np.argsort(order)]


def spatial_split(
    height: int,
    width: int,
    config: SplitConfig,
    buffer: int,
    used: list[PixelWindow] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> SpatialSplit:
    """Deal the blocks of a ``height`` x ``width`` label grid to splits.

    Args:
        height, width: label grid size in pixels.
        config: ``block_size``, ``fractions`` (of blocks) and ``seed``.
        buffer: pixels between cores of different splits (``config.buffer`` or one patch / tile).
        used: the blocks that take part (e.g. those touching the AOI); default all.
        origin: a block corner (row, col), e.g. the AOI's, so that blocks sized to the AOI divide it evenly.

    Raises:
        ConfigError: ``config.block_size`` not set (resolve it first with
            :func:`core.sampling.split_defaults.resolve_split`), or ``buffer`` larger than ``block_size`` (blocks of
            different splits two apart could then be closer than the buffer).
    """
    block_size = config.block_size
    if block_size is None:
        raise ConfigError(
            "spatial_split needs config.block_size; derive it first with core.sampling.split_defaults.resolve_split"
        )
    if buffer > block_size:
        raise ConfigError(
            f"split buffer {buffer} px is larger than block_size {block_size} px; use "
            f"block_size >= {buffer} or a smaller buffer / patch / tile"
        )
    blocks = block_grid(height, width, block_size, origin)
    used_set = set(blocks if used is None else used)
    idx = [i for i, b in enumerate(blocks) if b in used_set]
    rng = np.random.default_rng(config.seed)
    dealt = _deal(len(idx), config.fractions, rng)
    assignment: list[str | None] = [None] * len(blocks)
    for i, dealt_split in zip(idx, dealt, strict=True):
        assignment[i] = dealt_split
    ncol = len({b.col_off for b in blocks})
    nrow = len(blocks) // ncol
    half = math.ceil(buffer / 2)

    def split_at(br: int, bc: int) -> str | None:
        return assignment[br * ncol + bc] if 0 <= br < nrow and 0 <= bc < ncol else None

    def differs(cells: list[tuple[int, int]], split: str) -> bool:
        return any(split_at(r, c) not in (None, split) for r, c in cells)

    cores: list[PixelWindow | None] = []
    for i, b in enumerate(blocks):
        s = assignment[i]
        if s is None:
            cores.append(None)
            continue
        br, bc = divmod(i, ncol)
        top = half if differs([(br - 1, bc + k) for k in (-1, 0, 1)], s) else 0
        bottom = half if differs([(br + 1, bc + k) for k in (-1, 0, 1)], s) else 0
        left = half if differs([(br + k, bc - 1) for k in (-1, 0, 1)], s) else 0
        right = half if differs([(br + k, bc + 1) for k in (-1, 0, 1)], s) else 0
        h, w = b.height - top - bottom, b.width - left - right
        cores.append(PixelWindow(b.row_off + top, b.col_off + left, h, w) if h > 0 and w > 0 else None)
    return SpatialSplit(height, width, block_size, buffer, tuple(blocks), tuple(assignment), tuple(cores))


def date_split(dates: tuple[str | None, ...], config: SplitConfig) -> dict[str | None, str]:
    """Split name per acquisition date: ``test_date`` -> test, ``val_date`` -> val, the rest -> train.

    Raises:
        ConfigError: ``test_date`` / ``val_date`` not among ``dates``, or the same date for both.
    """
    for name, d in (("test_date", config.test_date), ("val_date", config.val_date)):
        if d is not None and d not in dates:
            raise ConfigError(f"{name} {d!r} is not one of the job's acquisition dates {list(dates)}; pick one of them")
    if config.val_date is not None and config.val_date == config.test_date:
        raise ConfigError(f"val_date and test_date are both {config.val_date!r}; hold out different dates")
    return {d: "test" if d == config.test_date else "val" if d == config.val_date else "train" for d in dates}


def date_record(assignment: dict[str | None, str], config: SplitConfig) -> dict[str, Any]:
    """The JSON split record of a date split."""
    return {
        "method": "date",
        "test_date": config.test_date,
        "val_date": config.val_date,
        "dates": {str(d): s for d, s in assignment.items()},
    }
