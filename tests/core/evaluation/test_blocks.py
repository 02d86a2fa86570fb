"""Block windows: tiles as they are, thin strips merged into bounded runs, every pixel exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from core.evaluation.blocks import iter_blocks, map_windows


def _coverage(src, windows) -> np.ndarray:  # type: ignore[no-untyped-def]
    hits = np.zeros((src.height, src.width), dtype=np.int64)
    for w in windows:
        hits[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    return hits


def test_tiled_map_is_read_tile_by_tile(class_map) -> None:  # type: ignore[no-untyped-def]
    with rasterio.open(class_map("t.tif", np.ones((40, 50), np.uint8), [1], blocksize=16)) as src:
        wins = map_windows(src)
        assert len(wins) == 3 * 4 and (_coverage(src, wins) == 1).all()


def test_strips_are_merged_into_runs_of_whole_strips(make_raster) -> None:  # type: ignore[no-untyped-def]
    data = np.arange(103 * 30, dtype=np.int64).reshape(103, 30).astype(np.uint8)
    path: Path = make_raster("s.tif", data, nodata=0, blockysize=2)  # 2-row strips
    with rasterio.open(path) as src:
        assert src.block_shapes[0] == (2, 30)
        wins = map_windows(src, target_pixels=30 * 10)
        assert [w.height for w in wins] == [10] * 10 + [3] and (_coverage(src, wins) == 1).all()
        assert len(map_windows(src, target_pixels=1)) == 52  # never less than one strip
        got = np.zeros_like(data)
        for w, block in iter_blocks(src, target_pixels=30 * 10):
            got[w.row_off : w.row_off + w.height, :] = block
        assert (got == data).all()
