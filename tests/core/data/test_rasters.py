"""Raster inspection on tiny GeoTIFFs written into tmp_path."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.data.rasters import (
    DIGEST_CHUNK,
    check_readable,
    crs_shift_px,
    file_fingerprint,
    fingerprint_change,
    grid_differences,
    inspect_raster,
    read_info,
    unique_values,
)
from core.errors import RasterError, RasterReadError

MakeRaster = Callable[..., Path]
UTM33 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
NC = (28.5, 0.0, 630534.0, 0.0, -28.5, 228114.0)


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_read_info_reports_profile(make_raster: MakeRaster) -> None:
    p = make_raster("a.tif", np.zeros((3, 20, 30), "int16"), nodata=-9999)
    info = read_info(p)
    assert (info.width, info.height, info.count) == (30, 20, 3)
    assert info.dtypes == ("int16",) * 3
    assert info.nodata == (-9999.0,) * 3
    assert info.transform == UTM33
    assert info.georeferenced_transform
    assert "UTM zone 33N" in (info.crs_wkt or "")
    assert info.bounds == (500000.0, 5600000.0 - 200.0, 500300.0, 5600000.0)


def test_nan_nodata_and_missing_nodata_read_as_none(make_raster: MakeRaster) -> None:
    assert read_info(make_raster("f.tif", np.zeros((16, 16), "float32"), nodata=float("nan"))).nodata == (None,)
    assert read_info(make_raster("u.tif", np.zeros((16, 16), "uint8"))).nodata == (None,)


def test_no_crs_no_transform(make_raster: MakeRaster) -> None:
    info = read_info(make_raster("n.tif", np.zeros((16, 16), "uint8"), crs=None, transform=None))
    assert info.crs_wkt is None
    assert not info.georeferenced_transform
    assert info.transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_missing_file_raises_read_error(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match=r"nope\.tif' does not exist"):
        read_info(tmp_path / "nope.tif")


def test_not_a_raster_raises(tmp_path: Path) -> None:
    p = tmp_path / "notes.tif"
    p.write_text("just some text, not a GeoTIFF\n" * 10)
    with pytest.raises(RasterError, match=r"notes\.tif' is not a raster GDAL can read"):
        read_info(p)


@pytest.mark.parametrize("compress", [None, "deflate"])
def test_truncated_file_is_detected(make_raster: MakeRaster, compress: str | None) -> None:
    rng = np.random.default_rng(0)
    extra = {"compress": compress} if compress else {}
    p = make_raster("t.tif", rng.integers(0, 4000, (3, 64, 64)).astype("uint16"), **extra)
    check_readable(p)  # intact: fine
    _truncate(p)
    read_info(p)  # the header survives: it still opens ...
    with pytest.raises(RasterError, match=r"t\.tif' is truncated or corrupt"):
        check_readable(p)  # ... but its last blocks cannot be read
    with pytest.raises(RasterError, match="truncated"):
        inspect_raster(p)


def test_crs_shift_same_projection_other_datum_realisation_is_tiny() -> None:
    # North Carolina: EPSG:32119 (NAD83) and EPSG:3358 (NAD83(HARN)), same Lambert projection.
    shift = crs_shift_px("EPSG:32119", "EPSG:3358", NC, 489, 443)
    assert shift < 0.1
    assert crs_shift_px("EPSG:32633", "EPSG:32633", UTM33, 16, 16) == 0.0


def test_crs_shift_other_projection_is_large() -> None:
    assert crs_shift_px("EPSG:32633", "EPSG:32634", UTM33, 16, 16) > 1000
    assert crs_shift_px("EPSG:32119", "EPSG:32618", NC, 489, 443) > 1000


def test_grid_differences(make_raster: MakeRaster) -> None:
    a = read_info(make_raster("a.tif", np.zeros((16, 16), "uint8")))
    assert grid_differences(a, read_info(make_raster("b.tif", np.zeros((16, 16), "uint8")))) == []
    size = grid_differences(a, read_info(make_raster("c.tif", np.zeros((16, 17), "uint8"))))
    assert size == ["size 17x16 px instead of 16x16"]
    shifted = (10.0, 0.0, 500010.0, 0.0, -10.0, 5600000.0)
    d = grid_differences(a, read_info(make_raster("d.tif", np.zeros((16, 16), "uint8"), transform=shifted)))
    assert len(d) == 1 and d[0].startswith("transform (10, 0, 500010")
    e = grid_differences(a, read_info(make_raster("e.tif", np.zeros((16, 16), "uint8"), crs="EPSG:32634")))
    assert len(e) == 1 and "EPSG:32634" in e[0] and "px apart" in e[0]
    nc_a = read_info(make_raster("nc_a.tif", np.zeros((16, 16), "uint8"), crs="EPSG:32119", transform=NC))
    nc_b = read_info(make_raster("nc_b.tif", np.zeros((16, 16), "uint8"), crs="EPSG:3358", transform=NC))
    assert grid_differences(nc_a, nc_b) == []


def test_fingerprint_change_detection(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * 1000)
    fp = file_fingerprint(p)
    assert fp.size == 1000 and len(fp.digest) == 64 and fp.path == str(p.resolve())
    assert fingerprint_change(fp) is None
    os.utime(p, ns=(fp.mtime_ns + 10**9, fp.mtime_ns + 10**9))  # touched, same bytes
    assert fingerprint_change(fp) is None
    p.write_bytes(b"b" * 1000)  # same size, other content
    assert fingerprint_change(fp) == "content changed"
    p.write_bytes(b"a" * 1001)
    assert fingerprint_change(fp) == "size 1001 bytes instead of 1000"
    p.unlink()
    assert fingerprint_change(fp) == "vanished"


def test_fingerprint_of_big_file_hashes_tail(tmp_path: Path) -> None:
    p = tmp_path / "big.bin"
    data = bytearray(3 * DIGEST_CHUNK + 17)
    p.write_bytes(bytes(data))
    fp = file_fingerprint(p)
    data[-1] = 1  # last byte: inside the hashed tail
    p.write_bytes(bytes(data))
    assert fingerprint_change(fp) == "content changed"


def test_unique_values(make_raster: MakeRaster) -> None:
    a = np.full((20, 20), -99999.0, "float32")
    a[:5] = 1
    a[5:10] = 7
    a[10, 0] = np.nan
    p = make_raster("lab.tif", a, nodata=-99999.0)
    vals = unique_values(p)
    assert len(vals) == 4 and vals[:3].tolist() == [-99999.0, 1.0, 7.0] and math.isnan(vals[3])
