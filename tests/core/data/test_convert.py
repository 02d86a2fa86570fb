"""Converters of numpy / MATLAB samples to GeoTIFF: synthetic inputs in tmp_path, and the real files (shared_data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from core.data.convert import SENTINEL2_L1C_BANDS, houston_to_geotiff, slovenia_to_geotiff
from core.errors import RasterError, RasterReadError


def _slovenia_dir(d: Path, dates: int = 2, rows: int = 11, cols: int = 10) -> Path:
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "reference_scenes.npy", rng.random((dates, rows, cols, 13), dtype=np.float32))
    lulc = np.zeros((rows, cols, 1), np.uint16)
    lulc[2:5, 3:6, 0] = 8
    np.save(d / "lulc.npy", lulc)
    ring = [
        [465000.0, 5079000.0],
        [465000.0, 5079110.0],
        [465100.0, 5079110.0],
        [465100.0, 5079000.0],
        [465000.0, 5079000.0],
    ]
    bbox = {
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "type": "Polygon",
        "coordinates": [ring],
    }
    (d / "bbox.geojson").write_text(json.dumps(bbox))
    return d


def test_slovenia_to_geotiff(tmp_path: Path) -> None:
    src = _slovenia_dir(tmp_path / "slo")
    out = slovenia_to_geotiff(src, tmp_path / "out")
    assert out["crs"] == "EPSG:32633"
    assert out["transform"] == (10.0, 0.0, 465000.0, 0.0, -10.0, 5079110.0)
    arrays = np.load(src / "reference_scenes.npy")
    assert len(out["images"]) == 2
    for k, p in enumerate(out["images"]):
        with rasterio.open(p) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (13, 11, 10, "float32")
            assert ds.crs.to_epsg() == 32633 and np.isnan(ds.nodata)
            assert ds.descriptions == SENTINEL2_L1C_BANDS
            np.testing.assert_array_equal(ds.read(), np.moveaxis(arrays[k], -1, 0))
            # the top-left pixel corner is the bbox's top-left corner
            assert ds.xy(0, 0, offset="ul") == (465000.0, 5079110.0)
    with rasterio.open(out["labels"]) as ds:
        lab = ds.read(1)
        assert lab.dtype == np.uint8 and int((lab == 8).sum()) == 9 and lab[2, 3] == 8


def test_slovenia_conversion_is_idempotent(tmp_path: Path) -> None:
    src = _slovenia_dir(tmp_path / "slo")
    first = slovenia_to_geotiff(src, tmp_path / "out")
    mtimes = {p: Path(p).stat().st_mtime_ns for p in [*first["images"], first["labels"]]}
    second = slovenia_to_geotiff(src, tmp_path / "out")
    assert second == first
    assert {p: Path(p).stat().st_mtime_ns for p in mtimes} == mtimes
    # changed input -> that output is rewritten
    lulc = np.load(src / "lulc.npy")
    lulc[0, 0, 0] = 1
    np.save(src / "lulc.npy", lulc)
    slovenia_to_geotiff(src, tmp_path / "out")
    with rasterio.open(first["labels"]) as ds:
        assert ds.read(1)[0, 0] == 1


def test_slovenia_missing_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RasterReadError, match=r"reference_scenes\.npy' is missing"):
        slovenia_to_geotiff(tmp_path / "empty", tmp_path / "out")


def _houston_mat(path: Path, hsi_px: int = 4) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    n = hsi_px * 4
    savemat(
        path,
        {
            "hyprImg": rng.integers(0, 20000, (hsi_px, hsi_px, 6)).astype(np.uint16),
            "rgbImg": rng.integers(0, 255, (n, n, 3)).astype(np.uint8),
            "clasLabs": rng.integers(0, 13, (n, n)).astype(np.uint8),
        },
    )
    return path


def test_houston_to_geotiff(tmp_path: Path) -> None:
    mat = _houston_mat(tmp_path / "h.mat")
    out = houston_to_geotiff(mat, tmp_path / "out")
    from scipy.io import loadmat

    m = loadmat(mat)
    with rasterio.open(out["hsi"]) as h, rasterio.open(out["rgb"]) as r, rasterio.open(out["labels"]) as lab:
        assert h.crs is None and r.crs is None and lab.crs is None
        assert (h.count, h.height, h.width, h.dtypes[0]) == (6, 4, 4, "uint16")
        assert (r.count, r.height, r.width, r.dtypes[0]) == (3, 16, 16, "uint8")
        assert h.transform == Affine(4, 0, 0, 0, 4, 0) and r.transform == Affine.identity() == lab.transform
        np.testing.assert_array_equal(h.read(), np.moveaxis(m["hyprImg"], -1, 0))
        np.testing.assert_array_equal(r.read(), np.moveaxis(m["rgbImg"], -1, 0))
        np.testing.assert_array_equal(lab.read(1), m["clasLabs"])
        # HSI pixel (r, c) covers RGB pixels 4r..4r+3: its corners map onto RGB pixel corners 4c, 4r and 4c+4, 4r+4
        for row, col in [(0, 0), (1, 2), (3, 3)]:
            x0, y0 = h.transform @ (col, row)
            x1, y1 = h.transform @ (col + 1, row + 1)
            assert ~r.transform @ (x0, y0) == (4 * col, 4 * row)
            assert ~r.transform @ (x1, y1) == (4 * col + 4, 4 * row + 4)
    mtimes = [Path(p).stat().st_mtime_ns for p in out.values()]
    assert houston_to_geotiff(mat, tmp_path / "out") == out
    assert [Path(p).stat().st_mtime_ns for p in out.values()] == mtimes


def test_houston_missing_variables(tmp_path: Path) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "x.mat", {"rgbImg": np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(RasterError, match=r"lacks variables \['hyprImg', 'clasLabs'\]"):
        houston_to_geotiff(tmp_path / "x.mat", tmp_path / "out")


@pytest.mark.shared_data
def test_real_slovenia_and_houston(shared_data: Path, tmp_path: Path) -> None:
    slo = slovenia_to_geotiff(shared_data / "slovenia_s2", tmp_path / "slo")
    assert len(slo["images"]) == 5
    with rasterio.open(slo["images"][0]) as ds:
        assert (ds.count, ds.height, ds.width) == (13, 101, 100)
        assert ds.res == pytest.approx((9.995, 9.997), abs=1e-3)
    hou = houston_to_geotiff(shared_data / "houston_crop" / "houston_dataset.mat", tmp_path / "hou")
    with rasterio.open(hou["hsi"]) as h, rasterio.open(hou["labels"]) as lab:
        assert (h.count, h.height, h.width) == (48, 128, 128)
        assert (lab.height, lab.width) == (512, 512) and int(lab.read(1).max()) == 12
