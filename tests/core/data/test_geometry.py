"""AOI parsing, validation, reprojection and clipping against a scene."""

from __future__ import annotations

import logging

import pytest
import shapely
from pyproj import Transformer

from core.configs import AOIConfig
from core.data.geometry import densify, parse_geometry, reproject, resolve_aoi
from core.data.scene import Acquisition, Modality, Scene
from core.errors import AOIError, AOIOutsideSceneError
from core.geo.windows import PixelWindow

# a 100 x 200 px grid (rows x cols) of 10 m pixels in UTM 33N
T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)


def make_scene(georeferenced: bool = True) -> Scene:
    mod = Modality("s2", 200, 100, T if georeferenced else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 3, "uint16", (None,) * 3)
    return Scene(
        "test",
        georeferenced,
        "EPSG:32633" if georeferenced else None,
        (mod,),
        (Acquisition("2021-01-01", {"s2": ("x.tif",)}),),
    )


def utm_box_in_wgs84(x0: float, y0: float, x1: float, y1: float) -> dict:
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    ring = [tr.transform(x, y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_whole_scene() -> None:
    aoi = resolve_aoi(AOIConfig(), make_scene())
    assert aoi.whole_scene and aoi.bbox == PixelWindow(0, 0, 100, 200) and aoi.warnings == ()


def test_wgs84_polygon_lands_on_the_right_pixels() -> None:
    # cols 20..60, rows 10..50 in UTM -> back through WGS84
    geom = utm_box_in_wgs84(500200, 5599500, 500600, 5599900)
    aoi = resolve_aoi(AOIConfig(geometry=geom), make_scene())
    # straight lon/lat edges bow slightly in UTM (densified reprojection follows them): a few cm at most
    assert aoi.geometry is not None
    assert aoi.geometry.bounds == pytest.approx((20, 10, 60, 50), abs=0.05)
    assert abs(aoi.bbox.row_off - 10) <= 1 and abs(aoi.bbox.col_off - 20) <= 1
    assert abs(aoi.bbox.row_end - 50) <= 1 and abs(aoi.bbox.col_end - 60) <= 1
    assert abs(aoi.geometry.area - 1600) < 2


def test_feature_and_feature_collection() -> None:
    geom = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    feat = {"type": "Feature", "properties": {}, "geometry": geom}
    for g in (geom, feat, {"type": "FeatureCollection", "features": [feat]}):
        aoi = resolve_aoi(AOIConfig(geometry=g, crs="pixel"), make_scene(False))
        assert aoi.bbox == PixelWindow(0, 0, 10, 10)


def test_malformed_empty_self_intersecting() -> None:
    with pytest.raises(AOIError, match="is not a GeoJSON object"):
        parse_geometry({"coordinates": []})
    with pytest.raises(AOIError, match="type 'Point' is not supported"):
        parse_geometry({"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(AOIError, match="malformed coordinates"):
        parse_geometry({"type": "Polygon", "coordinates": [[[0, 0], [1]]]})
    with pytest.raises(AOIError, match="is empty"):
        parse_geometry({"type": "Polygon", "coordinates": []})
    with pytest.raises(AOIError, match="is empty"):
        parse_geometry({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]})
    with pytest.raises(AOIError, match="Self-intersection.*without crossing edges"):
        parse_geometry({"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]})
    with pytest.raises(AOIError, match="has 2 features; expected exactly 1"):
        f = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}
        parse_geometry({"type": "FeatureCollection", "features": [f, f]})


def test_bad_crs_and_map_crs_on_pixel_scene() -> None:
    geom = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    with pytest.raises(AOIError, match="'EPSG:999999' is not a known CRS"):
        resolve_aoi(AOIConfig(geometry=geom, crs="EPSG:999999"), make_scene())
    with pytest.raises(AOIError, match="not georeferenced.*crs='pixel'"):
        resolve_aoi(AOIConfig(geometry=geom), make_scene(False))


def test_outside_names_both_extents_in_the_aoi_crs() -> None:
    geom = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}  # Gulf of Guinea
    with pytest.raises(
        AOIOutsideSceneError,
        match=r"AOI with bounds \(0, 0, 1, 1\) does not overlap scene 'test', "
        r"whose extent is \(15, 50\.54.*in EPSG:4326",
    ):
        resolve_aoi(AOIConfig(geometry=geom), make_scene())


def test_partly_outside_is_clipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    geom = {"type": "Polygon", "coordinates": [[[150, 50], [250, 50], [250, 150], [150, 150], [150, 50]]]}
    with caplog.at_level(logging.WARNING, logger="core.data.geometry"):
        aoi = resolve_aoi(AOIConfig(geometry=geom, crs="pixel"), make_scene(False))
    assert aoi.bbox == PixelWindow(50, 150, 50, 50)
    assert len(aoi.warnings) == 1 and "75.0% of it lies outside" in aoi.warnings[0]
    assert "75.0% of it lies outside" in caplog.text


def test_smaller_than_a_pixel_still_gives_a_window() -> None:
    geom = {"type": "Polygon", "coordinates": [[[5.2, 5.2], [5.6, 5.2], [5.6, 5.6], [5.2, 5.2]]]}
    aoi = resolve_aoi(AOIConfig(geometry=geom, crs="pixel"), make_scene(False))
    assert aoi.bbox == PixelWindow(5, 5, 1, 1)


def test_reprojection_densifies_edges() -> None:
    line_box = shapely.box(10, 50, 20, 60)
    assert len(densify(line_box).exterior.coords) > 64
    utm = reproject(line_box, "EPSG:4326", "EPSG:32633")
    # the 50N parallel is curved in UTM: its middle lies south of the straight chord between the corners
    tr = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    (_, ya), (_, yb), (_, ym) = tr.transform(10, 50), tr.transform(20, 50), tr.transform(15, 50)
    assert ym < (ya + yb) / 2 - 1000
    assert utm.bounds[1] <= ym + 1
