"""Training-time augmentation of batches (numpy, on the rank that trains on them)."""

from __future__ import annotations

import numpy as np


def dihedral(
    xs: list[np.ndarray], y: np.ndarray, dense: bool, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """A random rot90 (k = 0..3) and horizontal flip of each sample of a batch, the same for every modality.

    Each sample draws its own of the eight transforms (square samples; a batch of non-square ones shares one draw).

    Args:
        xs: one (B, H, W, C) array per modality.
        y: (B, H, W) label tiles when ``dense`` (transformed like the inputs), else per-sample labels (unchanged).
            ``xs`` or ``y`` may be empty (a model-parallel rank holds only its modality, or only the labels): the
            batch size is taken from whichever holds the batch, so every rank draws the same transforms.
    """
    b = len(xs[0]) if xs else len(y)
    square = all(x.shape[1] == x.shape[2] for x in xs)
    ks = rng.integers(4, size=b) if square else np.full(b, int(rng.integers(4)))
    flips = rng.integers(2, size=b).astype(bool) if square else np.full(b, bool(rng.integers(2)))

    def tf_(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a) if square else None
        for k in range(4):
            for flip in (False, True):
                sel = (ks == k) & (flips == flip)
                if not sel.any():
                    continue
                t = np.rot90(a[sel], k, axes=(1, 2))
                t = t[:, :, ::-1] if flip else t
                if out is None:
                    return np.ascontiguousarray(t)
                out[sel] = t
        return out if out is not None else a

    return [tf_(x) for x in xs], (tf_(y) if dense else y)


def window_side(tile: int, align: int) -> int | None:
    """The side of the random training windows of ``tile``-px tiles: the largest multiple of the model's pooling
    alignment ``align`` up to 3/4 of the tile, or None (whole tiles) when that leaves less than two alignments or
    no smaller window."""
    side = (3 * tile // 4) // align * align
    return side if 2 * align <= side < tile else None


def random_windows(
    xs: list[np.ndarray], y: np.ndarray, side: int, align: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One random ``side``-px window inside each tile of a batch, the same for every modality.

    Offsets are multiples of ``align`` (the model's pooling grid) and keep the window inside its tile. Each tile's
    offset is drawn uniformly among those whose window holds a labelled pixel (label >= 0), or among all offsets
    when none does, so sparse labels are not cropped away.

    Args:
        xs: one (B, H, W, C) array per modality, all on the label grid (H, W).
        y: (B, H, W) output indices (-1 = unlabelled).

    Returns:
        ``(xs, y, offsets)``: the windows, (B, side, side, C) and (B, side, side), and their (row, col) offsets (B, 2).
    """
    b, h, w = y.shape
    grid = [(r, c) for r in range(0, h - side + 1, align) for c in range(0, w - side + 1, align)]
    labelled = np.stack([(y[:, r : r + side, c : c + side] >= 0).any(axis=(1, 2)) for r, c in grid], axis=1)
    offsets = np.zeros((b, 2), dtype=np.int64)
    for i in range(b):
        choices = np.flatnonzero(labelled[i]) if labelled[i].any() else np.arange(len(grid))
        offsets[i] = grid[int(rng.choice(choices))]
    out_x = [np.stack([x[i, r : r + side, c : c + side] for i, (r, c) in enumerate(offsets)]) for x in xs]
    out_y = np.stack([y[i, r : r + side, c : c + side] for i, (r, c) in enumerate(offsets)])
    return out_x, out_y, offsets
