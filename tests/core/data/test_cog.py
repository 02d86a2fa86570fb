"""COG writing: tiled GeoTIFF window by window, then a COG with overviews, colour table and class names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from core.data.cog import (
    finalize_cog,
    hex_to_rgba,
    open_tiled,
    overview_factors,
    read_classes,
    tiled_profile,
    write_class_metadata,
)


def test_overview_factors() -> None:
    assert overview_factors(1000, 300, 256) == [2]
    assert overview_factors(100, 100, 256) == []
    assert overview_factors(64, 40, 8) == [2, 4, 8]


def test_hex_to_rgba_rejects_bad_colour() -> None:
    assert hex_to_rgba("#ff8000") == (255, 128, 0, 255)
    with pytest.raises(ValueError, match="'#12' is not '#rrggbb'"):
        hex_to_rgba("#12")


@pytest.mark.parametrize("crs", ["EPSG:32633", None])
def test_window_writes_become_cog(tmp_path: Path, crs: str | None) -> None:
    transform = Affine(10, 0, 500000, 0, -10, 5600000) if crs else Affine.identity()
    tmp, out = tmp_path / "map.tmp.tif", tmp_path / "map.tif"
    data = np.zeros((64, 80), dtype=np.uint8)
    data[:, :40] = 1
    data[:, 40:] = 2
    data[:8, :8] = 0  # nodata corner
    with open_tiled(tmp, **tiled_profile(80, 64, transform, crs, blocksize=32)) as dst:
        write_class_metadata(dst, [1, 2], ["forest", "water"], ["#00ff00", "#0000ff"])
        for r in range(0, 64, 32):
            for c in range(0, 80, 32):
                w = Window(c, r, min(32, 80 - c), min(32, 64 - r))
                dst.write(data[r : r + w.height, c : c + w.width], 1, window=w)
    finalize_cog(tmp, out, min_overview_size=8, blocksize=32)
    assert not tmp.exists()
    with rasterio.open(out) as src:
        assert src.driver == "GTiff" and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) == [2, 4, 8]
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        assert (src.crs.to_epsg() if src.crs else None) == (32633 if crs else None)
        assert src.transform == transform
        assert src.colormap(1)[1][:3] == (0, 255, 0) and src.colormap(1)[2][:3] == (0, 0, 255)
        assert src.tags()["CLASS_2"] == "water"
        assert np.array_equal(src.read(1), data)
        ov = src.read(1, out_shape=(8, 10))
        assert set(np.unique(ov)) <= {0, 1, 2}  # mode/nearest overviews never invent classes
    assert read_classes(out) == [
        {"id": 1, "name": "forest", "color": "#00ff00"},
        {"id": 2, "name": "water", "color": "#0000ff"},
    ]
