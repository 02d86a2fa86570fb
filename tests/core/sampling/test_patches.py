"""Patch sizes and windows per modality, the edge rule, label scans and class-balanced centre draws."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely

from core.configs import SplitConfig
from core.data.scene import Modality
from core.geo.windows import PixelWindow
from core.sampling.patches import (
    ScanResult,
    centre_bounds,
    modality_patch_size,
    patch_window,
    sample_centres,
    scan_labels,
    scan_strips,
)
from core.sampling.splits import spatial_split

RGB = Modality("rgb", 512, 512, (0.5, 0, 0, 0, -0.5, 0), 3, "uint8", (None,) * 3)
HSI = Modality("hsi", 128, 128, (2.0, 0, 0, 0, -2.0, 0), 48, "float32", (None,) * 48)
S2 = Modality("s2", 40, 30, (10.0, 0, 500000, 0, -10.0, 5600000), 1, "uint16", (None,))


def test_patch_size_rule_is_odd_and_scaled() -> None:
    assert modality_patch_size(25, RGB, RGB) == 25
    assert modality_patch_size(25, RGB, HSI) == 7  # round(6.25) = 6 -> odd 7
    assert modality_patch_size(1, RGB, HSI) == 1
    assert modality_patch_size(9, HSI, RGB) == 37  # round(36) -> 37


def test_patch_windows_cover_the_same_ground() -> None:
    assert patch_window(100, 200, 25, RGB, RGB) == PixelWindow(88, 188, 25, 25)
    # label pixel (100, 200) centre = (100.5, 200.5) RGB px = HSI pixel (25, 50)
    assert patch_window(100, 200, 25, RGB, HSI) == PixelWindow(22, 47, 7, 7)
    assert patch_window(5, 200, 25, RGB, RGB) is None  # would start at row -7


def test_centre_bounds_edge_rule() -> None:
    b = centre_bounds(25, RGB, [RGB, HSI])
    # RGB: 12 <= r <= 499; HSI: centre hsi row (r // 4) - 3 >= 0 -> r >= 12, (r // 4) + 3 <= 127 -> r <= 499
    assert b == PixelWindow(12, 12, 488, 488)
    assert centre_bounds(99, S2, [S2]) is None
    for r in (b.row_off, b.row_end - 1):
        assert patch_window(r, 200, 25, RGB, HSI) is not None and patch_window(r, 200, 25, RGB, RGB) is not None
    assert patch_window(b.row_end, 200, 25, RGB, RGB) is None


def test_scan_labels_filters_aoi_edge_and_split(make_raster: Callable[..., Path]) -> None:
    lab = np.zeros((30, 40), np.uint8)
    lab[:, :20] = 1
    lab[:, 20:] = 2
    p = str(make_raster("lab.tif", lab))
    full = PixelWindow(0, 0, 30, 40)
    res = scan_labels(p, full, None, full, None, None, 0)
    assert res.counts == {1: 600, 2: 600} and len(res.centres[1]) == 600
    # AOI: cols 0..10 (pixel centres inside) and edge rule rows 1..28
    aoi = shapely.box(0, 0, 10, 30)
    res = scan_labels(p, full, aoi, PixelWindow(1, 1, 28, 38), None, 5, 0)
    assert res.counts == {1: 28 * 9} and len(res.centres[1]) == 5
    assert set(res.centres[1][:, 2]) == {-1}
    sp = spatial_split(30, 40, SplitConfig(block_size=10, seed=0), buffer=3)
    res = scan_labels(p, full, None, full, sp, None, 0)
    codes = sp.split_codes(full)
    for arr in res.centres.values():
        assert (arr[:, 2] == codes[arr[:, 0], arr[:, 1]]).all() and (arr[:, 2] >= 0).all()
    assert sum(res.counts.values()) == int((codes >= 0).sum())


def test_sample_centres_balanced_and_exact() -> None:
    rng = np.random.default_rng(0)

    def part(cls_counts: dict[int, int], per: int | None) -> ScanResult:
        r = ScanResult()
        for c, n in cls_counts.items():
            r.counts[c] = n
            k = n if per is None else min(per, n)
            r.centres[c] = np.column_stack([rng.integers(0, 100, (k, 2)), np.full(k, -1)]).astype(np.int32)
        return r

    parts = [part({1: 500, 2: 3}, 50), part({1: 700, 3: 40}, 50)]
    got = sample_centres(parts, 50, seed=1)
    assert {c: len(a) for c, a in got.items()} == {1: 50, 2: 3, 3: 40}
    assert sample_centres(parts, 50, seed=1)[1].tolist() == got[1].tolist()
    everything = sample_centres([part({1: 30}, None), part({1: 12}, None)], None, seed=0)
    assert len(everything[1]) == 42


def test_scan_strips_cover_bbox() -> None:
    bbox = PixelWindow(5, 3, 101, 50)
    strips = scan_strips(bbox, max_pixels=1000)
    assert all(s.height * s.width <= 1000 for s in strips)
    assert sum(s.height for s in strips) == 101 and strips[0].row_off == 5 and strips[-1].row_end == 106
