"""Scene registration on tiny rasters: what is accepted, what is refused (and that refusals store nothing)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pydantic import ValidationError
from pyproj import Transformer

from core.data.catalog import FOOTPRINT_POINTS_PER_EDGE, SceneSpec, register_scene, verify_files
from core.errors import (
    GridMismatchError,
    LabelError,
    RasterError,
    RasterReadError,
    SceneExistsError,
    SceneFileChangedError,
)
from db.scenes import SceneStore

MakeRaster = Callable[..., Path]
UTM33 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
NC = (28.5, 0.0, 630534.0, 0.0, -28.5, 228114.0)
CLASSES = [{"id": 1, "name": "forest", "color": "#00aa00"}, {"id": 2, "name": "water"}]


def _read_labels(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _spec(files: dict[str, list[Path]], labels: Path | None = None, **kw: Any) -> SceneSpec:
    acq: dict[str, Any] = {"date": "2024-01-01", "files": {m: [str(p) for p in ps] for m, ps in files.items()}}
    if labels is not None:
        acq["labels"] = str(labels)
    kw.setdefault("classes", CLASSES if labels is not None else [])
    return SceneSpec(name=kw.pop("name", "tiny"), acquisitions=[acq], **kw)


def _labels(shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    a = np.zeros(shape, "uint8")
    a[:4] = 1
    a[4:8] = 2
    return a


@pytest.fixture
def store(db_url: str) -> SceneStore:
    return SceneStore(db_url)


def _refused(store: SceneStore, db_url: str, home: Path, spec: SceneSpec, exc: type[Exception], match: str) -> None:
    """Registering ``spec`` raises ``exc`` matching ``match`` and leaves the database and home/labels unchanged."""
    before = [s.name for s in SceneStore(db_url).list()]
    with pytest.raises(exc, match=match):
        register_scene(spec, store, home)
    assert [s.name for s in SceneStore(db_url).list()] == before
    assert not list((home / "labels").glob("*"))  # no rasterised labels left behind


# --- accepted ---------------------------------------------------------------------------------------------------


def test_register_multiband_scene(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    img = make_raster("img.tif", np.ones((4, 16, 16), "uint16"), nodata=0)
    lab = make_raster("lab.tif", _labels())
    scene = register_scene(_spec({"s2": [img]}, lab, description="tiny test"), store, home)
    assert scene.id is not None
    assert [s.name for s in SceneStore(db_url).list()] == ["tiny"]
    (m,) = scene.modalities
    assert (m.name, m.width, m.height, m.band_count, m.dtype) == ("s2", 16, 16, 4, "uint16")
    assert m.nodata == (0.0,) * 4 and m.transform == UTM33
    assert scene.label_modality == "s2" and scene.description == "tiny test"
    assert scene.acquisitions[0].labels == str(lab.resolve())
    assert [(c.id, c.name, c.color) for c in scene.classes] == [(1, "forest", "#00aa00"), (2, "water", "#ff7f0e")]
    assert {f.path for f in scene.fingerprints} == {str(img.resolve()), str(lab.resolve())}
    assert "UTM zone 33N" in (scene.crs_wkt or "")
    # footprint: densified ring in lon/lat whose corners are the grid corners
    ring = scene.footprint_wgs84["coordinates"][0]  # type: ignore[index]
    assert scene.footprint_wgs84["type"] == "Polygon"  # type: ignore[index]
    assert len(ring) == 4 * FOOTPRINT_POINTS_PER_EDGE + 1
    assert ring[0] == ring[-1]
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(500000.0, 5600000.0 - 160)
    assert ring[0] == pytest.approx([lon, lat], abs=1e-9)
    assert SceneStore(db_url).get("tiny") == scene


def test_stacked_single_band_files_and_nodata(
    make_raster: MakeRaster, store: SceneStore, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b1 = make_raster("b1.tif", np.ones((16, 16), "float32"), nodata=-99999.0)
    b2 = make_raster("b2.tif", np.ones((16, 16), "float32"), nodata=float("nan"))
    b3 = make_raster("b3.tif", np.ones((16, 16), "int16"))
    with caplog.at_level(logging.WARNING, logger="core.data.catalog"):
        scene = register_scene(_spec({"landsat": [b1, b2, b3]}), store, home)
    m = scene.modality("landsat")
    assert m.band_count == 3 and m.dtype == "float32"
    assert m.nodata == (-99999.0, None, None)
    assert [a for a in scene.acquisitions[0].files["landsat"]] == [str(p.resolve()) for p in (b1, b2, b3)]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "b3.tif declares no nodata" in warned[0]


def test_modalities_at_different_resolutions(make_raster: MakeRaster, store: SceneStore, home: Path) -> None:
    fine = make_raster("rgb.tif", np.zeros((3, 32, 32), "uint8"), transform=(2.5, 0, 500000.0, 0, -2.5, 5600000.0))
    coarse = make_raster("hsi.tif", np.zeros((48, 8, 8), "uint16"), transform=UTM33)
    lab = make_raster("lab.tif", _labels((32, 32)), transform=(2.5, 0, 500000.0, 0, -2.5, 5600000.0))
    spec = _spec({"hsi": [coarse], "rgb": [fine]}, lab, label_modality="rgb")
    scene = register_scene(spec, store, home)
    assert [(m.name, m.width, m.resolution) for m in scene.modalities] == [("hsi", 8, 10.0), ("rgb", 32, 2.5)]
    assert scene.primary.name == "rgb"


def test_crs_codes_differ_but_projection_same_is_accepted(
    make_raster: MakeRaster, store: SceneStore, home: Path
) -> None:
    # north_carolina: bands in EPSG:32119, labels in EPSG:3358, same grid.
    b = make_raster("b.tif", np.ones((16, 16), "float32"), crs="EPSG:32119", transform=NC, nodata=-99999.0)
    lab = make_raster("l.tif", _labels(), crs="EPSG:3358", transform=NC)
    scene = register_scene(_spec({"landsat": [b]}, lab), store, home)
    assert scene.acquisitions[0].labels == str(lab.resolve())


def test_not_georeferenced_scene(make_raster: MakeRaster, store: SceneStore, home: Path) -> None:
    rgb = make_raster("rgb.tif", np.zeros((3, 16, 16), "uint8"), crs=None, transform=None)
    hsi = make_raster("hsi.tif", np.zeros((5, 4, 4), "uint16"), crs=None, transform=(4, 0, 0, 0, 4, 0))
    lab = make_raster("lab.tif", _labels(), crs=None, transform=None)
    spec = _spec({"rgb": [rgb], "hsi": [hsi]}, lab, georeferenced=False)
    scene = register_scene(spec, store, home)
    assert scene.crs_wkt is None and scene.footprint_wgs84 is None and not scene.georeferenced
    assert scene.modality("hsi").transform == (4.0, 0.0, 0.0, 0.0, 4.0, 0.0)


def test_label_nodata_is_allowed(make_raster: MakeRaster, store: SceneStore, home: Path) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"), nodata=0)
    lab_data = np.full((16, 16), -99999.0, "float32")
    lab_data[:3] = 2
    lab = make_raster("lab.tif", lab_data, nodata=-99999.0)
    register_scene(_spec({"a": [img]}, lab), store, home)


def test_spec_from_json_file_resolves_relative_paths(make_raster: MakeRaster, tmp_path: Path) -> None:
    make_raster("img.tif", np.ones((16, 16), "uint8"))
    (tmp_path / "spec.json").write_text(json.dumps({"name": "j", "acquisitions": [{"files": {"a": ["img.tif"]}}]}))
    spec = SceneSpec.from_json_file(tmp_path / "spec.json")
    assert spec.acquisitions[0].files["a"] == [str(tmp_path / "img.tif")]
    assert SceneSpec.model_validate_json(spec.model_dump_json()) == spec


# --- vector labels ------------------------------------------------------------------------------------------------


def _write_polygons(
    path: Path, polys: list[tuple[list[tuple[float, float]], Any]], crs: str = "EPSG:32633", field_type: str = "int"
) -> Path:
    import fiona

    schema = {"geometry": "Polygon", "properties": {"cls": field_type}}
    with fiona.open(path, "w", driver="GeoJSON", crs=crs, schema=schema) as dst:
        for ring, value in polys:
            dst.write({"geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"cls": value}})
    return path


def _box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def test_vector_labels_are_rasterised_from_another_crs(
    make_raster: MakeRaster, tmp_path: Path, store: SceneStore, home: Path
) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"), nodata=0)
    # 4x4 pixels (40 m) in the top-left corner, given in lon/lat
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    ring = [to_ll.transform(x, y) for x, y in _box(500000, 5599960, 500040, 5600000)]
    vec = _write_polygons(tmp_path / "p.geojson", [(ring, "water")], crs="EPSG:4326", field_type="str")
    spec = SceneSpec(
        name="vec",
        classes=CLASSES,
        label_field="cls",
        acquisitions=[{"date": "d1", "files": {"s2": [str(img)]}, "label_vector": str(vec)}],
    )
    scene = register_scene(spec, store, home)
    out = Path(scene.acquisitions[0].labels or "")
    assert out == (home / "labels" / "vec_d1.tif").resolve()
    lab = _read_labels(out)
    assert lab.shape == (16, 16) and int((lab == 2).sum()) == 16 and lab[:4, :4].min() == 2
    assert str(out) in {f.path for f in scene.fingerprints}


@pytest.mark.parametrize(
    ("polys", "field", "match"),
    [
        ([(_box(500000, 5599900, 500050, 5600000), 1)], "klass", r"has no field 'klass'; its fields are \['cls'\]"),
        ([(_box(500000, 5599900, 500050, 5600000), 5)], "cls", r"holds values \['5'\] that are not declared classes"),
        ([(_box(0, 0, 50, 50), 1)], "cls", "no polygon of .* covers a pixel of the label grid"),
    ],
)
def test_bad_vector_labels_are_refused(
    make_raster: MakeRaster,
    tmp_path: Path,
    store: SceneStore,
    db_url: str,
    home: Path,
    polys: list[Any],
    field: str,
    match: str,
) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"), nodata=0)
    vec = _write_polygons(tmp_path / "p.geojson", polys)
    spec = SceneSpec(
        name="vec",
        classes=CLASSES,
        label_field=field,
        acquisitions=[{"files": {"s2": [str(img)]}, "label_vector": str(vec)}],
    )
    _refused(store, db_url, home, spec, LabelError, match)


# --- refused ------------------------------------------------------------------------------------------------------


def test_not_a_raster(tmp_path: Path, store: SceneStore, db_url: str, home: Path) -> None:
    p = tmp_path / "bands.tif"
    p.write_text("not a raster")
    _refused(store, db_url, home, _spec({"a": [p]}), RasterError, r"bands\.tif' is not a raster GDAL can read")


def test_missing_file(tmp_path: Path, store: SceneStore, db_url: str, home: Path) -> None:
    _refused(store, db_url, home, _spec({"a": [tmp_path / "gone.tif"]}), RasterReadError, r"gone\.tif' does not exist")


def test_truncated_file(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    p = make_raster("cut.tif", np.random.default_rng(1).integers(0, 999, (2, 64, 64)).astype("uint16"))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _refused(store, db_url, home, _spec({"a": [p]}), RasterError, r"cut\.tif' is truncated or corrupt")


def test_no_crs(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    p = make_raster("nocrs.tif", np.ones((16, 16), "uint8"), crs=None)
    _refused(store, db_url, home, _spec({"a": [p]}), RasterError, r"nocrs\.tif' has no CRS; .*georeferenced=False")


def test_no_geotransform(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    p = make_raster("notr.tif", np.ones((16, 16), "uint8"), transform=None)
    _refused(store, db_url, home, _spec({"a": [p]}), RasterError, r"notr\.tif' has no geotransform")


@pytest.mark.parametrize(
    ("kw", "what"),
    [
        ({"transform": (10.0, 0.0, 500020.0, 0.0, -10.0, 5600000.0)}, r"transform \(10, 0, 500020"),
        ({"crs": "EPSG:32634"}, r"CRS EPSG:32634 .* instead of EPSG:32633"),
    ],
)
def test_misaligned_band_files(
    make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path, kw: dict[str, Any], what: str
) -> None:
    a = make_raster("b1.tif", np.ones((16, 16), "uint8"))
    b = make_raster("b2.tif", np.ones((16, 16), "uint8"), **kw)
    _refused(
        store,
        db_url,
        home,
        _spec({"ls": [a, b]}),
        GridMismatchError,
        rf"band file '.*b2\.tif' of modality 'ls' does not line up with '.*b1\.tif': {what}",
    )


def test_band_files_of_different_size(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    a = make_raster("b1.tif", np.ones((16, 16), "uint8"))
    b = make_raster("b2.tif", np.ones((16, 20), "uint8"))
    _refused(store, db_url, home, _spec({"ls": [a, b]}), GridMismatchError, "size 20x16 px instead of 16x16")


def test_modalities_not_covering_same_ground(
    make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path
) -> None:
    a = make_raster("a.tif", np.ones((16, 16), "uint8"))
    b = make_raster("b.tif", np.ones((8, 8), "uint8"), transform=(10.0, 0, 500000.0, 0, -10.0, 5600000.0))
    _refused(
        store,
        db_url,
        home,
        _spec({"a": [a], "b": [b]}),
        GridMismatchError,
        r"modality 'b' covers .* they do not cover the same ground",
    )


def test_modalities_in_different_crs(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    a = make_raster("a.tif", np.ones((16, 16), "uint8"))
    b = make_raster("b.tif", np.ones((16, 16), "uint8"), crs="EPSG:32634")
    _refused(
        store,
        db_url,
        home,
        _spec({"a": [a], "b": [b]}),
        GridMismatchError,
        r"modality 'b' .* is in CRS EPSG:32634 .* reproject it",
    )


@pytest.mark.parametrize(
    ("kw", "what"),
    [
        ({"transform": (10.0, 0.0, 500010.0, 0.0, -10.0, 5600000.0)}, "transform"),  # shifted one pixel
        ({"crs": "EPSG:32634"}, "CRS EPSG:32634"),  # same numbers, another projection
        ({"crs": "EPSG:3358", "transform": NC}, "transform"),
    ],
)
def test_label_off_grid(
    make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path, kw: dict[str, Any], what: str
) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"))
    lab = make_raster("lab.tif", _labels(), **kw)
    _refused(
        store,
        db_url,
        home,
        _spec({"s2": [img]}, lab),
        LabelError,
        rf"label raster '.*lab\.tif' is not on the label grid of modality 's2' .*: {what}",
    )


def test_label_values_outside_classes(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"))
    a = _labels()
    a[10, 10], a[11, 11] = 7, 9
    lab = make_raster("lab.tif", a)
    _refused(
        store,
        db_url,
        home,
        _spec({"s2": [img]}, lab),
        LabelError,
        r"holds values \[7, 9\] that are not declared classes \[\(1, 'forest'\), \(2, 'water'\)\]",
    )


def test_label_with_several_bands(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"))
    lab = make_raster("lab.tif", np.zeros((2, 16, 16), "uint8"))
    _refused(store, db_url, home, _spec({"s2": [img]}, lab), LabelError, "has 2 bands; labels must be a single band")


def test_name_taken(make_raster: MakeRaster, store: SceneStore, db_url: str, home: Path) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"))
    register_scene(_spec({"s2": [img]}), store, home)
    _refused(store, db_url, home, _spec({"s2": [img]}), SceneExistsError, "a scene named 'tiny' is already registered")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"acquisitions": [{"files": {"a": ["x.tif"]}, "labels": "l.tif"}]}, "no classes are declared"),
        (
            {
                "acquisitions": [{"files": {"a": ["x.tif"]}, "labels": "l.tif", "label_vector": "v.shp"}],
                "classes": CLASSES,
            },
            "gives both labels and label_vector",
        ),
        (
            {"acquisitions": [{"date": "1", "files": {"a": ["x"]}}, {"date": "2", "files": {"b": ["y"]}}]},
            r"has modalities \['b'\] but the first has \['a'\]",
        ),
        ({"acquisitions": [{"files": {"a": ["x"]}, "label_vector": "v.shp"}], "classes": CLASSES}, "needs label_field"),
        ({"acquisitions": [{"files": {"a": ["x"]}}], "classes": CLASSES * 2}, r"class ids \[1, 2\] are declared more"),
        ({"acquisitions": [{"files": {"a": ["x"]}}], "label_modality": "b"}, r"label_modality 'b' is not one of"),
    ],
)
def test_invalid_specs(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SceneSpec(name="bad", **raw)


# --- file fingerprints ----------------------------------------------------------------------------------------------


def test_verify_files_detects_changed_and_vanished(make_raster: MakeRaster, store: SceneStore, home: Path) -> None:
    img = make_raster("img.tif", np.ones((16, 16), "uint8"))
    lab = make_raster("lab.tif", _labels())
    scene = register_scene(_spec({"s2": [img]}, lab), store, home)
    verify_files(scene)
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # touched only: same content
    verify_files(scene)
    make_raster("img.tif", np.full((16, 16), 2, "uint8"))  # rewritten with other pixels
    with pytest.raises(
        SceneFileChangedError, match=r"1 file\(s\) of scene 'tiny' changed .*img\.tif \(content changed\)"
    ):
        verify_files(scene)
    lab.unlink()
    with pytest.raises(
        SceneFileChangedError, match=r"2 file\(s\).*img\.tif \(content changed\).*lab\.tif \(vanished\)"
    ):
        verify_files(store.get("tiny"))
