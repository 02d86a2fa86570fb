"""Class maps to web-map overlays: bounds in EPSG:4326, decimation of large rasters, error layers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from app.services.overlays import class_overlay, colourise, decimation, error_classes, error_overlay, scene_quicklook
from core.data.scene import ClassInfo
from tests.conftest import write_raster

T0 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
CLASSES = (ClassInfo(1, "forest", "#228b22"), ClassInfo(2, "water", "#1f78b4"))


def test_overlay_bounds_match_the_raster_corners(tmp_path: Path) -> None:
    data = np.ones((40, 60), dtype="uint8")
    data[:, 30:] = 2
    ov = class_overlay(str(write_raster(tmp_path / "p.tif", data, transform=T0)), CLASSES)
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon0, lat1 = tr.transform(500000.0, 5600000.0)
    lon1, lat0 = tr.transform(500600.0, 5599600.0)
    (s, w), (n, e) = ov.bounds  # type: ignore[misc]
    # the mercator box holds the UTM box: corners agree within one 10 m pixel (~1.5e-4 deg)
    assert abs(s - lat0) < 2e-4 and abs(n - lat1) < 2e-4 and abs(w - lon0) < 2e-4 and abs(e - lon1) < 2e-4
    img = np.asarray(Image.open(io.BytesIO(ov.png)))
    assert img.shape[2] == 4 and ov.factor == 1
    colours = {tuple(px) for px in img.reshape(-1, 4) if px[3] == 255}
    assert colours <= {(0x22, 0x8B, 0x22, 255), (0x1F, 0x78, 0xB4, 255)} and len(colours) == 2
    assert ov.data_url.startswith("data:image/png;base64,")


def test_large_predictions_are_downsampled(tmp_path: Path) -> None:
    data = np.ones((3000, 2000), dtype="uint8")
    ov = class_overlay(str(write_raster(tmp_path / "big.tif", data, transform=T0)), CLASSES, max_size=1000)
    assert decimation(3000, 2000, 1000) == 3 and ov.factor == 3
    assert ov.source_shape == (3000, 2000) and max(ov.shape) <= 1100


def test_not_georeferenced_maps_have_no_bounds(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "px.tif", np.full((8, 8), 2, dtype="uint8"), crs=None, transform=None)
    ov = class_overlay(str(path), CLASSES)
    assert ov.bounds is None and ov.shape == (8, 8)


def test_error_classes_and_share(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 1, 2]], dtype="uint8")
    pred = np.array([[1, 1, 2, 2]], dtype="uint8")
    assert error_classes(pred, labels).tolist() == [[0, 2, 1, 2]]
    with pytest.raises(ValueError, match="not on the same grid"):
        error_classes(pred, labels[:, :2])
    lab = np.ones((20, 20), dtype="uint8")
    prd = lab.copy()
    prd[:5, :] = 2
    big_lab = write_raster(tmp_path / "lab.tif", np.pad(lab, ((0, 20), (0, 20)), constant_values=1), transform=T0)
    _, share = error_overlay(str(write_raster(tmp_path / "prd.tif", prd, transform=T0)), str(big_lab))
    assert share == pytest.approx(100 / 400)  # labels cut to the prediction's 20 x 20 extent


def test_colourise_leaves_unknown_ids_transparent() -> None:
    rgba = colourise(np.array([[0, 1, 7]], dtype="uint8"), {1: (10, 20, 30, 255)})
    assert rgba[0, 1].tolist() == [10, 20, 30, 255] and rgba[0, 0, 3] == 0 and rgba[0, 2, 3] == 0


@pytest.mark.shared_data
def test_quicklook_of_a_real_scene(shared_data: Path) -> None:
    ov = scene_quicklook((str(shared_data / "landsat_rgb" / "RGB.byte.tif"),), max_size=256)
    assert ov is not None and ov.bounds is not None and max(ov.shape) <= 300
    (s, w), (n, e) = ov.bounds
    assert 23 < s < n < 27 and -80 < w < e < -76  # the Bahamas
