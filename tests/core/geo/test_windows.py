"""Window arithmetic: sets of windows, the moved-back edge rule, AOI filtering, random-size properties."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from core.geo.windows import PixelWindow, block_grid, raster_window, sliding_windows, windows_in_geometry


def test_pixel_window_validates() -> None:
    with pytest.raises(ValueError, match="offsets must be >= 0"):
        PixelWindow(-1, 0, 4, 4)
    with pytest.raises(ValueError, match="size must be >= 1"):
        PixelWindow(0, 0, 0, 4)
    with pytest.raises(TypeError, match="must be an int"):
        PixelWindow(0, 0, 4.0, 4)  # type: ignore[arg-type]
    w = PixelWindow(2, 3, 4, 5)
    assert (w.row_end, w.col_end, w.shape) == (6, 8, (4, 5))
    assert w.intersection(PixelWindow(5, 7, 10, 10)) == PixelWindow(5, 7, 1, 1)
    assert w.intersection(PixelWindow(6, 0, 1, 1)) is None
    assert hash(w) == hash(PixelWindow(2, 3, 4, 5))


def test_exact_fit_no_overlap() -> None:
    got = set(sliding_windows(raster_window(8, 8), 4))
    assert got == {PixelWindow(r, c, 4, 4) for r in (0, 4) for c in (0, 4)}


def test_last_window_moved_back_to_the_edge() -> None:
    # 10 px with tile 4: starts 0, 4, then 8 would pass the edge -> moved back to 6
    got = sliding_windows(raster_window(10, 4), 4)
    assert got == [PixelWindow(0, 0, 4, 4), PixelWindow(4, 0, 4, 4), PixelWindow(6, 0, 4, 4)]


def test_stride_overlap() -> None:
    got = [w.col_off for w in sliding_windows(raster_window(4, 10), 4, stride=3)]
    assert got == [0, 3, 6]


def test_area_inside_bounds_uses_raster_edge_not_area_edge() -> None:
    # AOI bbox cols 5..7 in a raster of 10 cols, tile 4: one window starting at 5 (fits inside the raster)
    got = sliding_windows(PixelWindow(0, 5, 4, 2), 4, bounds=raster_window(4, 10))
    assert got == [PixelWindow(0, 5, 4, 4)]
    # near the right edge: moved back to end at col 10
    got = sliding_windows(PixelWindow(0, 8, 4, 2), 4, bounds=raster_window(4, 10))
    assert got == [PixelWindow(0, 6, 4, 4)]


def test_raster_smaller_than_tile_gives_one_clipped_window() -> None:
    assert sliding_windows(raster_window(5, 7), 16) == [PixelWindow(0, 0, 5, 7)]
    assert sliding_windows(raster_window(5, 40), 16) == [PixelWindow(0, c, 5, 16) for c in (0, 16, 24)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="stride larger than the tile"):
        sliding_windows(raster_window(8, 8), 4, stride=5)
    with pytest.raises(ValueError, match="is not inside bounds"):
        sliding_windows(PixelWindow(0, 0, 8, 8), 4, bounds=raster_window(4, 4))


def test_windows_outside_the_polygon_are_skipped() -> None:
    # an L-shaped AOI: the bottom-right quadrant is inside the bbox but outside the polygon
    poly = shapely.Polygon([(0, 0), (8, 0), (8, 4), (4, 4), (4, 8), (0, 8)])
    wins = sliding_windows(raster_window(8, 8), 4)
    assert set(windows_in_geometry(wins, poly)) == {
        PixelWindow(0, 0, 4, 4),
        PixelWindow(0, 4, 4, 4),
        PixelWindow(4, 0, 4, 4),
    }
    assert windows_in_geometry(wins, None) == wins


def test_block_grid_cuts_last_blocks_short() -> None:
    blocks = block_grid(10, 7, 4)
    assert len(blocks) == 3 * 2
    assert blocks[-1] == PixelWindow(8, 4, 2, 3)
    cover = np.zeros((10, 7), int)
    for b in blocks:
        cover[b.row_off : b.row_end, b.col_off : b.col_end] += 1
    assert (cover == 1).all()


def test_block_grid_anchored_at_an_origin() -> None:
    """Block corners on (2, 3) + multiples of 4: an AOI starting there is divided into whole blocks."""
    blocks = block_grid(10, 7, 4, origin=(2, 3))
    assert sorted({b.row_off for b in blocks}) == [0, 2, 6] and sorted({b.col_off for b in blocks}) == [0, 3]
    assert PixelWindow(2, 3, 4, 4) in blocks and PixelWindow(6, 3, 4, 4) in blocks
    cover = np.zeros((10, 7), int)
    for b in blocks:
        cover[b.row_off : b.row_end, b.col_off : b.col_end] += 1
    assert (cover == 1).all()
    assert block_grid(10, 7, 4, origin=(8, 4)) == block_grid(10, 7, 4)  # an origin on the default grid


def test_random_sizes_cover_every_aoi_pixel_and_stay_inside() -> None:
    rng = np.random.default_rng(42)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 90, size=2))
        tile = int(rng.integers(1, 40))
        stride = int(rng.integers(1, tile + 1))
        # a random triangle AOI inside the raster
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(3)]
        poly = shapely.Polygon(pts)
        if poly.area < 0.5:
            continue
        aoi_px = geometry_mask([poly], out_shape=(h, w), transform=Affine.identity(), invert=True)
        if not aoi_px.any():
            continue
        rows, cols = np.nonzero(aoi_px)
        bbox = PixelWindow(
            int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        )
        wins = windows_in_geometry(sliding_windows(bbox, tile, stride, bounds=raster_window(h, w)), poly)
        cover = np.zeros((h, w), bool)
        for win in wins:
            assert win.row_end <= h and win.col_end <= w, (h, w, tile, win)
            assert win.shape == (min(tile, h), min(tile, w))
            cover[win.row_off : win.row_end, win.col_off : win.col_end] = True
        assert cover[aoi_px].all(), (h, w, tile, stride, pts)
