"""Vectorisation: no polygon below the minimum mapping unit (across window borders too), mapped area unchanged,
areas per class match the merged map, polygons valid, not overlapping and not cut by windows, CRS right."""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry import shape

from core.data import cog
from core.errors import GridMismatchError, RasterError
from core.export.vectorize import vectorize

CLASSES = [
    {"id": 1, "name": "forest", "color": "#228b22"},
    {"id": 2, "name": "water", "color": "#0000ff"},
    {"id": 3, "name": "urban", "color": "#ff0000"},
]
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5600000)


def _blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth class blobs, salt-and-pepper speckle, a nodata band: a plausible prediction."""
    field = ndimage.gaussian_filter(rng.normal(size=(h, w, 3)), sigma=(8, 8, 0))
    classes = (np.argmax(field, axis=-1) + 1).astype(np.uint8)
    speckle = rng.random((h, w)) < 0.03
    classes[speckle] = rng.integers(1, 4, speckle.sum())
    classes[:, :7] = 0
    return classes


def _write(tmp_path: Path, name: str, data: np.ndarray, nodata: int, meta: bool) -> Path:
    profile = cog.tiled_profile(data.shape[1], data.shape[0], TRANSFORM, "EPSG:32633", nodata=nodata)
    tmp = tmp_path / f"{name}.tmp.tif"
    with cog.open_tiled(tmp, **profile) as dst:
        dst.write(data[None])
        if meta:
            cog.write_class_metadata(dst, [1, 2, 3], [c["name"] for c in CLASSES], [c["color"] for c in CLASSES])
    return cog.finalize_cog(tmp, tmp_path / f"{name}.tif")


@pytest.fixture
def prediction(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    classes = _blobs(rng, 230, 300)
    conf = rng.integers(30, 101, classes.shape).astype(np.uint8)
    conf[classes == 0] = 255
    return (
        _write(tmp_path, "map", classes, 0, True),
        _write(tmp_path, "map_confidence", conf, 255, False),
        classes,
        conf,
    )


def _components(classes: np.ndarray) -> int:
    return sum(ndimage.label(classes == k)[1] for k in np.unique(classes) if k)


def _burn(feats: list, shape_: tuple[int, int], transform: Affine = TRANSFORM) -> np.ndarray:
    """The written polygons burnt back onto the class map's grid."""
    return rasterize(
        [(f.geometry, f.properties["class_id"]) for f in feats],
        out_shape=shape_,
        transform=transform,
        fill=0,
        dtype="uint8",
    )


def _region_sizes(classes: np.ndarray) -> np.ndarray:
    """Per pixel: the pixel count of its 4-connected one-class region (0 on nodata)."""
    out = np.zeros(classes.shape, np.int64)
    for k in np.unique(classes):
        if k:
            lab, _ = ndimage.label(classes == k)
            out[lab > 0] = np.bincount(lab.ravel())[lab[lab > 0]]
    return out


def _mmu_holds(mapped: np.ndarray, classes: np.ndarray, mmu: int, unmerged: int = 0) -> None:
    """The merged map: the same nodata, every region at least ``mmu`` pixels (but ``unmerged`` islands in nodata),
    and regions that were at least ``mmu`` pixels keep their class."""
    assert np.array_equal(mapped == 0, classes == 0)  # mapped area unchanged
    sizes = _region_sizes(mapped)
    small = (sizes > 0) & (sizes < mmu)
    assert sum(ndimage.label(small & (mapped == k))[1] for k in np.unique(mapped) if k) == unmerged
    big = _region_sizes(classes) >= mmu
    assert np.array_equal(mapped[big], classes[big])


def test_areas_add_up_and_polygons_are_whole(tmp_path: Path, prediction: tuple) -> None:
    path, conf_path, classes, conf = prediction
    res = vectorize(
        path,
        tmp_path / "out.gpkg",
        tmp_path / "out.geojson",
        confidence=conf_path,
        min_mapping_unit=0.05,
        mmu_unit="ha",
        window=64,
    )  # 0.05 ha = 5 pixels of 100 m2
    assert res.mmu_pixels == 5 and res.windows == 4 * 5
    with fiona.open(tmp_path / "out.gpkg") as src:
        assert src.crs.to_epsg() == 32633
        feats = list(src)
    geoms = [shape(f.geometry) for f in feats]
    expected = _burn(feats, classes.shape)
    want = {k: int((expected == k).sum()) for k in (1, 2, 3)}
    assert res.class_pixels == want  # the polygons cover exactly the mapped (merged) pixels
    assert res.polygons == _components(expected)  # no polygon left cut at a window border
    _mmu_holds(expected, classes, 5)
    assert all(g.is_valid for g in geoms)
    for k in (1, 2, 3):
        mine = [f for f in feats if f.properties["class_id"] == k]
        assert sum(f.properties["area_ha"] for f in mine) == pytest.approx(want[k] * 0.01, abs=1e-9)
        assert sum(f.properties["pixels"] for f in mine) == want[k]
        assert {f.properties["class_name"] for f in mine} == {CLASSES[k - 1]["name"]}
        weighted = sum(f.properties["mean_conf"] * f.properties["pixels"] for f in mine) / want[k]
        assert weighted == pytest.approx(conf[expected == k].mean(), rel=1e-9)
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(sum(g.area for g in geoms))  # no overlaps
    assert union.area == pytest.approx((expected != 0).sum() * 100.0)

    with fiona.open(tmp_path / "out.geojson") as src:
        assert src.crs.to_epsg() == 4326 and len(src) == res.polygons
        xmin, ymin, xmax, ymax = src.bounds
    assert 15.0 < xmin < xmax < 16.0 and 50.0 < ymin < ymax < 51.0  # 500 km E, 5600 km N in UTM 33N


def test_simplification_keeps_the_coverage(tmp_path: Path, prediction: tuple) -> None:
    path, _, _classes, _ = prediction
    res = vectorize(path, tmp_path / "s.gpkg", min_mapping_unit=20, simplify=12.0, window=100)
    with fiona.open(tmp_path / "s.gpkg") as src:
        feats = list(src)
    geoms = [shape(f.geometry) for f in feats]
    assert all(g.is_valid and not g.is_empty for g in geoms)
    plain = sum(len(shape(f.geometry).exterior.coords) for f in feats)
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(sum(g.area for g in geoms), rel=1e-9)  # neighbours still do not overlap
    total = sum(res.class_area_ha.values()) * 1e4
    assert union.area == pytest.approx(total, rel=0.02)
    unsimplified = vectorize(path, tmp_path / "u.gpkg", min_mapping_unit=20, window=100)
    with fiona.open(tmp_path / "u.gpkg") as src:
        assert sum(len(shape(f.geometry).exterior.coords) for f in src) > 1.5 * plain
    assert unsimplified.polygons == res.polygons


def test_bad_inputs(tmp_path: Path, prediction: tuple, make_raster) -> None:  # type: ignore[no-untyped-def]
    path, _, _, _ = prediction
    other = make_raster("small.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(GridMismatchError, match="confidence raster"):
        vectorize(path, tmp_path / "x.gpkg", confidence=other)
    no_crs = make_raster("nocrs.tif", np.ones((10, 10), np.uint8), crs=None)
    with pytest.raises(RasterError, match="no CRS"):
        vectorize(no_crs, out_geojson=tmp_path / "x.geojson", classes=CLASSES)
    with pytest.raises(RasterError, match="neither"):
        vectorize(path)
    floats = make_raster("f.tif", np.ones((10, 10), np.float32))
    with pytest.raises(RasterError, match="uint8"):
        vectorize(floats, tmp_path / "x.gpkg", classes=CLASSES)


@pytest.mark.shared_data
def test_published_strzegom_prediction(tmp_path: Path, shared_data: Path) -> None:
    src_path = shared_data / "strzegom" / "published_unet_prediction_20230709.tif"
    with rasterio.open(src_path) as src:
        data = src.read(1)
    names = [
        "conifer forest",
        "mixed forest",
        "urban",
        "crops",
        "bare soil",
        "grassland",
        "roads",
        "water",
        "crops vegetation",
        "quarries",
    ]
    classes = [{"id": i + 1, "name": n, "color": "#808080"} for i, n in enumerate(names)]
    res = vectorize(
        src_path,
        tmp_path / "s.gpkg",
        tmp_path / "s.geojson",
        min_mapping_unit=0.5,
        mmu_unit="ha",
        classes=classes,
        window=128,
    )
    with fiona.open(tmp_path / "s.gpkg") as src:
        assert src.crs.to_epsg() == 32633
        feats = list(src)
        transform = rasterio.open(src_path).transform
    areas: dict[int, float] = {}
    for f in feats:
        assert shape(f.geometry).is_valid
        areas[f.properties["class_id"]] = areas.get(f.properties["class_id"], 0) + f.properties["area_ha"]
    assert res.mmu_pixels == 50  # 0.5 ha of 10 m pixels
    assert areas == pytest.approx(res.class_area_ha, rel=1e-9)
    mapped = _burn(feats, data.shape, transform)
    assert res.class_pixels == {int(k): int((mapped == k).sum()) for k in np.unique(mapped) if k}
    assert res.polygons == _components(mapped) == len(feats)
    _mmu_holds(mapped, data, 50)
    assert min(f.properties["pixels"] for f in feats) >= 50 and res.mmu_unmerged == 0
    assert min(f.properties["area_ha"] for f in feats) >= 0.5 - 1e-9
    assert sum(f.properties["area_ha"] for f in feats) == pytest.approx(data.size * 0.01)  # 401 x 401 px of 1 a
    _valid_and_disjoint(feats, data.size * 100.0)
    before = sum(ndimage.label(data == k)[1] for k in range(1, 11))
    assert before > 4 * res.polygons  # the unmerged map has over 4 times as many regions


def test_geographic_and_pixel_maps(tmp_path: Path, make_raster) -> None:  # type: ignore[no-untyped-def]
    data = np.zeros((60, 60), np.uint8)
    data[10:40, 10:40] = 1
    geo = make_raster("geo.tif", data, crs="EPSG:4326", transform=(0.001, 0, 16.0, 0, -0.001, 51.0))
    calls: list[tuple[str, int, int]] = []
    res = vectorize(
        geo,
        tmp_path / "g.gpkg",
        tmp_path / "g.geojson",
        classes=CLASSES,
        window=64,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [("polygonize", 1, 1), ("write", 1, 1)]
    with fiona.open(tmp_path / "g.gpkg") as src:
        (f,) = list(src)
    # 0.03 deg x 0.03 deg at 51 N: 3336 m (north-south) x 2100 m (east-west), geodesic
    assert f.properties["area_ha"] == pytest.approx(3336 * 2100 / 1e4, rel=0.01)
    with pytest.raises(RasterError, match="projected CRS"):
        vectorize(geo, tmp_path / "h.gpkg", classes=CLASSES, min_mapping_unit=1, mmu_unit="ha")

    pix = make_raster("pix.tif", data, crs=None, transform=None)
    res = vectorize(pix, tmp_path / "p.gpkg", classes=CLASSES, window=64)
    with fiona.open(tmp_path / "p.gpkg") as src:
        assert not src.crs and len(src) == res.polygons == 1
        assert shape(next(iter(src)).geometry).bounds == (10.0, 10.0, 40.0, 40.0)  # pixel coordinates (col, row)


def _valid_and_disjoint(feats: list, area: float) -> None:
    """Every geometry valid, no two overlapping (the union's area is the sum), covering ``area`` (map units)."""
    geoms = [shape(f.geometry) for f in feats]
    assert all(g.is_valid and not g.is_empty for g in geoms)
    assert shapely.union_all(geoms).area == pytest.approx(sum(g.area for g in geoms), rel=1e-12)
    assert sum(g.area for g in geoms) == pytest.approx(area, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mmu", [2, 9, 40])
def test_no_polygon_below_the_mmu_on_noisy_maps(tmp_path: Path, seed: int, mmu: int) -> None:
    """Salt-and-pepper maps (every pixel an independent class: most regions are single pixels whose neighbours are
    all small, what one sieve pass leaves): no polygon under the MMU, across 64 px window borders too."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(1, 4, (150, 170)).astype(np.uint8)
    classes[:, 160:] = 0  # a nodata edge
    classes[40:45, :] = 0  # a nodata band cutting the map in two
    path = _write(tmp_path, "noise", classes, 0, True)
    maps = []
    for window in (64, 1024):
        res = vectorize(path, tmp_path / f"n{window}.gpkg", min_mapping_unit=mmu, window=window)
        with fiona.open(tmp_path / f"n{window}.gpkg") as src:
            feats = list(src)
        assert res.mmu_pixels == mmu and res.mmu_unmerged == 0 and res.polygons == len(feats)
        assert min(f.properties["pixels"] for f in feats) >= mmu
        mapped = _burn(feats, classes.shape)
        _mmu_holds(mapped, classes, mmu)
        _valid_and_disjoint(feats, (classes != 0).sum() * 100.0)  # total area unchanged
        assert sum(res.class_pixels.values()) == (classes != 0).sum()
        assert res.polygons == _components(mapped)
        maps.append(mapped)
    assert np.array_equal(*maps)  # the same map whatever the windows


def test_islands_in_nodata_are_kept_and_counted(tmp_path: Path) -> None:
    """A region below the MMU that touches no mapped pixel cannot be merged: it is kept (its area is not lost)."""
    classes = np.ones((80, 90), np.uint8)
    classes[10:30, 10:30] = 0
    classes[18:21, 18:20] = 2  # a 6-pixel island of class 2 in a nodata hole
    classes[50:52, 50:52] = 3  # 4 pixels of class 3 inside class 1
    path = _write(tmp_path, "islands", classes, 0, True)
    calls: list[tuple] = []
    res = vectorize(path, tmp_path / "i.gpkg", min_mapping_unit=10, window=64, progress=lambda *a: calls.append(a))
    assert res.mmu_unmerged == 1 and res.class_pixels == {1: (classes != 0).sum() - 6, 2: 6}
    assert ("regions", 4, 4) in calls and calls[-1] == ("write", 1, 1)
    with fiona.open(tmp_path / "i.gpkg") as src:
        assert sorted((f.properties["class_id"], f.properties["pixels"]) for f in src) == [(1, 7200 - 400 - 0), (2, 6)]
