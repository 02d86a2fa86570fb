"""Patch sampling for per-pixel classifiers: patch sizes per modality, patch windows and class-balanced centres.

A patch is centred on one labelled pixel of the label grid. Each modality gets the patch that covers the same
ground at its own resolution:

* size rule: ``size_m = round(patch_size * res_label / res_m)``, plus 1 when that is even (patches stay centred),
  at least 1. Houston: a 25 px RGB patch (0.5 m) -> round(25 * 0.5 / 2) = 6 -> 7 px HSI patch (2 m).
* centre rule: the modality pixel holding the label pixel's centre point; the patch is that pixel +- size_m // 2.
* edge rule: a centre whose patch would leave any modality's raster is dropped (no padding, no partial patches).

Centres are found without reading the label raster in the driver: :func:`scan_labels` runs in a Dask task on one
strip of the label raster and returns per-class counts plus a uniform random subset of at most ``per_class``
eligible centres per class (all of them when ``per_class`` is None); :func:`sample_centres` then draws exactly
``per_class`` per class (or all, when a class has fewer) uniformly over the whole AOI with a multivariate
hypergeometric draw of how many come from each strip, which is exactly uniform sampling without replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from core.data.grid import GridMap
from core.data.reader import LabelReader
from core.data.scene import Modality
from core.geo.windows import PixelWindow
from core.sampling.splits import SpatialSplit


def modality_patch_size(patch_size: int, label: Modality, modality: Modality) -> int:
    """Patch side in pixels on ``modality``'s grid for a ``patch_size`` px patch on the label grid (odd, >= 1)."""
    size = max(1, round(patch_size * label.resolution / modality.resolution))
    return size + 1 if size % 2 == 0 else size


def _centre_pixels(
    rows: np.ndarray, cols: np.ndarray, label: Modality, modality: Modality
) -> tuple[np.ndarray, np.ndarray]:
    """Modality pixel (row, col) holding the centre of each label pixel (rows, cols): :class:`GridMap`'s rule."""
    grid = GridMap.between(label, modality)
    return grid.centre_rows(rows), grid.centre_cols(cols)


def patch_window(row: int, col: int, patch_size: int, label: Modality, modality: Modality) -> PixelWindow | None:
    """The patch of ``modality`` centred on label pixel (row, col); None when it would leave the raster."""
    size = modality_patch_size(patch_size, label, modality)
    r, c = _centre_pixels(np.array([row]), np.array([col]), label, modality)
    r0, c0 = int(r[0]) - size // 2, int(c[0]) - size // 2
    if r0 < 0 or c0 < 0 or r0 + size > modality.height or c0 + size > modality.width:
        return None
    return PixelWindow(r0, c0, size, size)


def centre_bounds(patch_size: int, label: Modality, modalities: list[Modality]) -> PixelWindow | None:
    """The label-grid pixels whose patch fits inside every modality's raster (the edge rule); None if none do."""
    rows, cols = np.arange(label.height), np.arange(label.width)
    ok_r, ok_c = np.ones(label.height, bool), np.ones(label.width, bool)
    for m in modalities:
        half = modality_patch_size(patch_size, label, m) // 2
        mr, _ = _centre_pixels(rows, np.zeros_like(rows), label, m)
        _, mc = _centre_pixels(np.zeros_like(cols), cols, label, m)
        ok_r &= (mr - half >= 0) & (mr + half < m.height)
        ok_c &= (mc - half >= 0) & (mc + half < m.width)
    if not ok_r.any() or not ok_c.any():
        return None
    r = np.flatnonzero(ok_r)
    c = np.flatnonzero(ok_c)
    return PixelWindow(int(r[0]), int(c[0]), int(r[-1] - r[0] + 1), int(c[-1] - c[0] + 1))


@dataclass
class ScanResult:
    """What a label-scan task returns: per class, the eligible count and a random subset of centres.

    ``centres[cls]`` is an (k, 3) int32 array of (row, col, split code) on the label grid (split code -1 when the
    job has no spatial split).
    """

    counts: dict[int, int] = field(default_factory=dict)
    centres: dict[int, np.ndarray] = field(default_factory=dict)


def scan_labels(
    label_path: str,
    window: PixelWindow,
    aoi: BaseGeometry | None,
    allowed: PixelWindow,
    split: SpatialSplit | None,
    per_class: int | None,
    seed: int,
) -> ScanResult:
    """Eligible patch centres of one strip of a label raster (runs in a Dask worker).

    A pixel is eligible when it is labelled (> 0), its centre lies in the AOI (pixel coords), it is inside
    ``allowed`` (the edge rule) and, with a spatial split, inside a block core.

    Args:
        label_path: the label raster (label grid).
        window: the strip to scan, label-grid pixels.
        aoi: AOI geometry in (col, row) pixel coordinates; None = whole scene.
        allowed: window of centres whose patches fit every modality (:func:`centre_bounds`).
        split: the spatial split or None.
        per_class: keep at most this many random centres per class (None: keep all).
        seed: seeds the subset draw (derive it from the job seed and the strip).
    """
    with LabelReader(label_path) as reader:
        labels = reader.read(window)
    ok = labels > 0
    if aoi is not None:
        ok &= geometry_mask(
            [aoi], out_shape=window.shape, invert=True, transform=Affine.translation(window.col_off, window.row_off)
        )
    inside = np.zeros(window.shape, bool)
    inter = allowed.intersection(window)
    if inter is not None:
        inside[
            inter.row_off - window.row_off : inter.row_end - window.row_off,
            inter.col_off - window.col_off : inter.col_end - window.col_off,
        ] = True
    ok &= inside
    codes = split.split_codes(window) if split is not None else np.full(window.shape, -1, np.int8)
    if split is not None:
        ok &= codes >= 0
    rng = np.random.default_rng(seed)
    result = ScanResult()
    rr, cc = np.nonzero(ok)
    cls_of = labels[rr, cc]
    for cls in np.unique(cls_of):
        sel = np.flatnonzero(cls_of == cls)
        result.counts[int(cls)] = int(sel.size)
        if per_class is not None and sel.size > per_class:
            sel = rng.choice(sel, size=per_class, replace=False)
        r, c = rr[sel], cc[sel]
        result.centres[int(cls)] = np.column_stack([r + window.row_off, c + window.col_off, codes[r, c]]).astype(
            np.int32
        )
    return result


def sample_centres(results: list[ScanResult], per_class: int | None, seed: int) -> dict[int, np.ndarray]:
    """Class -> (n, 3) int32 (row, col, split code) centres drawn from scan results (driver side).

    ``per_class`` None takes every eligible centre; otherwise exactly ``per_class`` per class, uniformly without
    replacement over all strips (classes with fewer eligible pixels take all of them). Sorted by (row, col).
    """
    rng = np.random.default_rng(seed)
    classes = sorted({c for r in results for c in r.counts})
    out: dict[int, np.ndarray] = {}
    for cls in classes:
        parts = [r.centres.get(cls, np.zeros((0, 3), np.int32)) for r in results]
        counts = np.array([r.counts.get(cls, 0) for r in results], dtype=np.int64)
        if per_class is None or counts.sum() <= per_class:
            chosen = parts  # the tasks kept every centre when a class has <= per_class in total
        else:
            take = rng.multivariate_hypergeometric(counts, per_class)
            chosen = [p[rng.choice(len(p), size=int(k), replace=False)] for p, k in zip(parts, take) if k > 0]
        arr = np.concatenate(chosen) if chosen else np.zeros((0, 3), np.int32)
        out[cls] = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
    return out


def scan_strips(bbox: PixelWindow, max_pixels: int = 4_000_000) -> list[PixelWindow]:
    """Row strips of ``bbox`` of at most ``max_pixels`` pixels each (units of work for :func:`scan_labels`)."""
    rows = max(1, min(bbox.height, max_pixels // max(1, bbox.width)))
    n = math.ceil(bbox.height / rows)
    return [
        PixelWindow(
            bbox.row_off + i * rows, bbox.col_off, min(rows, bbox.row_end - bbox.row_off - i * rows), bbox.width
        )
        for i in range(n)
    ]
