"""Mapped areas: planar pixel areas, geodesic cell areas for EPSG:4326, pixel counts for non-georeferenced maps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from core.errors import RasterError
from core.evaluation.areas import geodesic_row_areas_m2, mapped_areas, write_areas_csv

DATA = np.array([[1, 1, 2, 0], [1, 3, 2, 2], [3, 3, 0, 7]], dtype=np.uint8)  # 7 is not a declared class


def test_planar_areas_in_utm(class_map) -> None:  # type: ignore[no-untyped-def]
    a = mapped_areas(class_map("m.tif", DATA, [1, 2, 3]))
    assert a.method == "planar" and a.pixel_area_m2 == pytest.approx(100.0)
    assert [(c.class_id, c.pixels) for c in a.classes] == [(1, 3), (2, 3), (3, 3)]
    assert a.classes[0].area_m2 == pytest.approx(300.0) and a.classes[0].hectares == pytest.approx(0.03)
    assert a.classes[0].km2 == pytest.approx(0.0003) and a.classes[0].percent == pytest.approx(100 / 3)
    assert a.undeclared_pixels == 1 and a.total_pixels == 9 and a.total_area_m2 == pytest.approx(900.0)


def test_planar_area_uses_the_crs_unit(class_map) -> None:  # type: ignore[no-untyped-def]
    # EPSG:2229 (California zone 5) is in US survey feet: a 10 ft pixel is (10 * 1200/3937 m)^2
    a = mapped_areas(
        class_map("ft.tif", DATA, [1, 2, 3], crs="EPSG:2229", transform=(10.0, 0.0, 6500000.0, 0.0, -10.0, 1900000.0))
    )
    assert a.pixel_area_m2 == pytest.approx((10 * 1200 / 3937) ** 2, rel=1e-12)


def _quadrangle_m2(lat1: float, lat2: float, dlon: float) -> float:
    """Exact area of a cell bounded by two meridians and two parallels on the WGS84 ellipsoid (authalic formula,
    Snyder 1987 eq. 3-12), in m²."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    e, b2 = math.sqrt(e2), (a * a) * (1 - e2)

    def q(phi: float) -> float:
        s = math.sin(math.radians(phi))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return abs(math.radians(dlon) * b2 / 2 * (q(lat2) - q(lat1)))


def test_geodesic_areas_in_epsg4326_match_a_hand_computation(class_map) -> None:  # type: ignore[no-untyped-def]
    t = (0.001, 0.0, 15.0, 0.0, -0.001, 51.0)
    a = mapped_areas(class_map("geo.tif", DATA, [1, 2, 3], crs="EPSG:4326", transform=t))
    assert a.method == "geodesic" and a.pixel_area_m2 is None
    rows = [_quadrangle_m2(51.0 - 0.001 * r, 51.0 - 0.001 * (r + 1), 0.001) for r in range(3)]
    sphere = 6371008.8**2 * math.radians(0.001) * (math.sin(math.radians(51.0)) - math.sin(math.radians(50.999)))
    assert rows[0] == pytest.approx(sphere, rel=5e-3)  # ~70.2 m x 111.2 m at 51 N: the ellipsoid is close
    expected = {1: 2 * rows[0] + rows[1], 2: rows[0] + 2 * rows[1], 3: rows[1] + 2 * rows[2]}
    for c in a.classes:
        assert c.area_m2 == pytest.approx(expected[c.class_id], rel=1e-6)
    assert sum(c.percent for c in a.classes) == pytest.approx(100.0)
    np.testing.assert_allclose(geodesic_row_areas_m2(t, 3, a_crs_wkt()), rows, rtol=1e-6)


def a_crs_wkt() -> str:
    from rasterio.crs import CRS

    return CRS.from_epsg(4326).to_wkt()


def test_rotated_geographic_grid_is_refused() -> None:
    with pytest.raises(RasterError, match="rotated"):
        geodesic_row_areas_m2((0.001, 0.0001, 15.0, 0.0, -0.001, 51.0), 3, a_crs_wkt())


def test_not_georeferenced_map_gives_pixel_counts_only(class_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = mapped_areas(class_map("px.tif", DATA, [1, 2, 3], crs=None, transform=None))
    assert a.method == "pixels" and a.total_area_m2 is None
    assert all(c.area_m2 is None and c.hectares is None for c in a.classes)
    assert [c.pixels for c in a.classes] == [3, 3, 3] and a.stratum_sizes() == {1: 3.0, 2: 3.0, 3: 3.0}
    rows = list(csv.DictReader(write_areas_csv(a, tmp_path / "a.csv").open()))
    assert rows[0]["hectares"] == "" and rows[-1]["class_name"] == "total" and rows[-1]["pixels"] == "9"


def test_areas_csv_and_dict_round_trip(class_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = mapped_areas(class_map("m.tif", DATA, [1, 2, 3], class_names=["forest", "water", "urban"]))
    rows = list(csv.DictReader(write_areas_csv(a, tmp_path / "areas.csv").open()))
    assert [r["class_name"] for r in rows] == ["forest", "water", "urban", "total"]
    assert float(rows[1]["hectares"]) == pytest.approx(0.03) and float(rows[3]["km2"]) == pytest.approx(0.0009)
    assert type(a).from_dict(a.to_dict()) == a
