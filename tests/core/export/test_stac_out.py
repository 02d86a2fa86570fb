"""STAC out: Items beside prediction COGs, a run catalogue, offline validation against pystac's shipped schemas."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
from affine import Affine
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from shapely.geometry import box, shape

from core.data import cog
from core.export.errors import StacError
from core.export.qml import style_outputs
from core.export.stac_out import RunInfo, validate_offline, write_run_catalog, write_stac_item

CLASSES = [{"id": 1, "name": "forest", "color": "#228b22"}, {"id": 2, "name": "water", "color": "#0000ff"}]
TRANSFORM = Affine(10, 0, 600000, 0, -10, 5650000)


def _cog(folder: Path, name: str, data: np.ndarray, nodata: int, classes: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.tmp.tif"
    with cog.open_tiled(
        tmp, **cog.tiled_profile(data.shape[1], data.shape[0], TRANSFORM, "EPSG:32633", nodata=nodata)
    ) as dst:
        dst.write(data[None])
        if classes:
            cog.write_class_metadata(dst, [1, 2], ["forest", "water"], ["#228b22", "#0000ff"])
    return cog.finalize_cog(tmp, folder / f"{name}.tif")


def _prediction(folder: Path, name: str) -> tuple[Path, Path]:
    classes = np.ones((80, 120), np.uint8)
    classes[40:, 60:] = 2
    return _cog(folder, name, classes, 0, True), _cog(
        folder, f"{name}_confidence", np.full((80, 120), 90, np.uint8), 255, False
    )


def test_items_and_catalogue_validate_offline(tmp_path: Path) -> None:
    bundle = tmp_path / "models" / "run3"
    bundle.mkdir(parents=True)
    (bundle / "meta.json").write_text("{}")
    items = []
    for name, date in (("pred_a", "2021-06-19"), ("pred_b", dt.date(2022, 7, 19))):
        path, conf = _prediction(tmp_path / "out", name)
        style_outputs(path, confidence_path=conf)
        items.append(
            write_stac_item(
                path, None, date, RunInfo(run_id=3, model=str(bundle), scene="strzegom"), confidence_path=conf
            )
        )
    assert items[0] == tmp_path / "out" / "pred_a.json"

    item = pystac.Item.from_file(str(items[0]))
    assert item.datetime == dt.datetime(2021, 6, 19, tzinfo=dt.UTC)
    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:32633" and proj.shape == [80, 120] and proj.transform == list(TRANSFORM)[:6]
    assert proj.bbox == [600000.0, 5649200.0, 601200.0, 5650000.0]
    lon0, lat0, lon1, lat1 = item.bbox
    assert 16.0 < lon0 < lon1 < 17.0 and 50.0 < lat0 < lat1 < 51.0
    assert shape(item.geometry).buffer(1e-9).contains(box(*item.bbox).centroid)
    classes = ClassificationExtension.ext(item.assets["classification"]).classes
    assert [(c.value, c.name, c.color_hint) for c in classes] == [
        (0, "nodata", None),
        (1, "forest", "228B22"),
        (2, "water", "0000FF"),
    ]
    assert classes[0].nodata is True
    assert Path(item.assets["classification"].get_absolute_href()) == (tmp_path / "out" / "pred_a.tif").resolve()
    assert Path(item.assets["confidence"].get_absolute_href()).name == "pred_a_confidence.tif"
    assert item.assets["style"].roles == ["style"] and "confidence_style" in item.assets
    assert item.properties["workbench:run_id"] == 3 and item.properties["workbench:scene"] == "strzegom"
    link = item.get_single_link("derived_from")
    assert Path(link.get_absolute_href()) == (bundle / "meta.json").resolve()

    catalog = write_run_catalog(items, tmp_path / "out", catalog_id="run-3")
    cat = pystac.Catalog.from_file(str(catalog))
    assert sorted(i.id for i in cat.get_all_items()) == ["pred_a", "pred_b"]
    assert len(validate_offline(catalog)) == 3  # the catalogue and both items, no network
    links = {ln["rel"]: ln["href"] for ln in json.loads(items[1].read_text())["links"]}
    assert links["root"] == links["parent"] == "./catalog.json"  # items stay beside their COGs, linked back
    assert links["derived_from"] == "../models/run3/meta.json"


def test_invalid_stac_is_caught_offline(tmp_path: Path) -> None:
    path, _ = _prediction(tmp_path, "p")
    item_path = write_stac_item(path, CLASSES, "2021-06-19T10:30:00Z")
    d = json.loads(item_path.read_text())
    d["bbox"] = [1, 2]  # a bbox needs 4 (or 6) numbers
    item_path.write_text(json.dumps(d))
    with pytest.raises(StacError, match="not valid STAC"):
        validate_offline(item_path)
    with pytest.raises(StacError, match="acquisition datetime"):
        write_stac_item(path, CLASSES, None)  # type: ignore[arg-type]
    with pytest.raises(StacError, match="ISO 8601"):
        write_stac_item(path, CLASSES, "19/06/2021")


def test_no_crs_is_refused(tmp_path: Path, make_raster) -> None:  # type: ignore[no-untyped-def]
    p = make_raster("nocrs.tif", np.ones((8, 8), np.uint8), crs=None)
    with pytest.raises(StacError, match="no CRS"):
        write_stac_item(p, CLASSES, "2021-06-19")
