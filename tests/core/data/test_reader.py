"""Windowed reads: stacked band files, nodata masks, label windows, windows between grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.data.reader import ModalityReader, convert_window, read_labels, read_modality
from core.data.scene import Modality
from core.errors import GridMismatchError, LabelError, RasterReadError
from core.geo.windows import PixelWindow

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)


def mod(
    name: str, w: int, h: int, res: float, bands: int = 1, nodata: tuple = (None,), dtype: str = "uint16"
) -> Modality:
    return Modality(name, w, h, (res, 0.0, 500000.0, 0.0, -res, 5600000.0), bands, dtype, nodata)


def test_stacks_band_files_in_order_with_nodata_mask(make_raster: Callable[..., Path]) -> None:
    a = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    b = np.full((1, 16, 16), 7, dtype=np.uint16)
    b[0, 5, 6] = 0
    pa = make_raster("a.tif", a, nodata=None)
    pb = make_raster("b.tif", b, nodata=0)
    m = mod("s2", 16, 16, 10.0, bands=3, nodata=(None, None, 0))
    data, valid = read_modality([str(pa), str(pb)], m, PixelWindow(4, 5, 3, 4))
    assert data.shape == (3, 3, 4) and data.dtype == np.uint16
    np.testing.assert_array_equal(data[:2], a[:, 4:7, 5:9])
    np.testing.assert_array_equal(data[2], b[0, 4:7, 5:9])
    assert valid.sum() == 11 and not valid[1, 1]


def test_nan_is_nodata_for_floats(make_raster: Callable[..., Path]) -> None:
    a = np.ones((2, 8, 8), np.float32)
    a[1, 2, 3] = np.nan
    p = make_raster("f.tif", a)
    with ModalityReader([str(p)], mod("f", 8, 8, 10.0, 2, (None, None), "float32")) as r:
        _, valid = r.read(PixelWindow(0, 0, 8, 8))
    assert valid.sum() == 63 and not valid[2, 3]


def test_window_past_the_edge_and_missing_file(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    p = make_raster("a.tif", np.zeros((1, 8, 8), np.uint16))
    with pytest.raises(RasterReadError, match="reaches past raster .* of 8x8 px"):
        read_modality([str(p)], mod("a", 8, 8, 10.0), PixelWindow(4, 4, 5, 4))
    with pytest.raises(RasterReadError, match="cannot open raster .*missing.tif"):
        read_modality([str(tmp_path / "missing.tif")], mod("a", 8, 8, 10.0), PixelWindow(0, 0, 1, 1))


def test_labels_float_nodata_to_uint8_and_bad_values(make_raster: Callable[..., Path]) -> None:
    lab = np.zeros((8, 8), np.float32)
    lab[1, 1], lab[2, 2], lab[3, 3] = 3, np.nan, -9999
    p = make_raster("l.tif", lab, nodata=-9999)
    y = read_labels(str(p), PixelWindow(0, 0, 8, 8))
    assert y.dtype == np.uint8 and y[1, 1] == 3 and y.sum() == 3
    bad = make_raster("bad.tif", np.full((8, 8), 2.5, np.float32))
    with pytest.raises(LabelError, match=r"holds values \[2.5.*must be integers 0..255"):
        read_labels(str(bad), PixelWindow(0, 0, 2, 2))


def test_convert_window_between_resolutions() -> None:
    rgb, hsi = mod("rgb", 400, 400, 0.5), mod("hsi", 100, 100, 2.0)
    assert convert_window(PixelWindow(100, 200, 100, 100), rgb, hsi) == PixelWindow(25, 50, 25, 25)
    assert convert_window(PixelWindow(25, 50, 25, 25), hsi, rgb) == PixelWindow(100, 200, 100, 100)
    assert convert_window(PixelWindow(3, 3, 2, 2), rgb, rgb) == PixelWindow(3, 3, 2, 2)
    with pytest.raises(GridMismatchError, match=r"maps to fractional pixels .* multiples of the ratio 4"):
        convert_window(PixelWindow(2, 0, 100, 100), rgb, hsi)
    small = mod("hsi", 10, 10, 2.0)
    with pytest.raises(GridMismatchError, match="leave the 10x10 grid of 'hsi'"):
        convert_window(PixelWindow(0, 0, 100, 100), rgb, small)


def test_read_channels_last_pads_and_stacks(make_raster: Callable[..., Path]) -> None:
    a = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    b = np.full((1, 16, 16), 7, dtype=np.uint16)
    b[0, 14, 14] = 0
    m = mod("s2", 16, 16, 10.0, bands=3, nodata=(None, None, 0))
    with ModalityReader([str(make_raster("a.tif", a)), str(make_raster("b.tif", b, nodata=0))], m) as r:
        full, valid_full = r.read_channels_last(PixelWindow(4, 5, 8, 8), 8)
        chw, _ = r.read(PixelWindow(4, 5, 8, 8))
        padded, valid = r.read_channels_last(PixelWindow(12, 10, 4, 6), 8)
    np.testing.assert_array_equal(full, chw.transpose(1, 2, 0))
    assert valid_full.all()
    assert padded.shape == (8, 8, 3) and valid.shape == (4, 6) and valid.sum() == 23
    np.testing.assert_array_equal(padded[:4, :6, :2], a[:, 12:16, 10:16].transpose(1, 2, 0))
    assert not padded[4:].any() and not padded[:, 6:].any()
