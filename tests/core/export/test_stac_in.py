"""STAC in: Items/Collections pointing at the real sample files become scene specs that pass registration's
validation (core.data.catalog.register_scene with a store that keeps nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import RasterError
from core.export.errors import RemoteHrefError, StacError
from core.export.stac_in import scene_spec_from_stac, validate_scene_spec

S2_BANDS = [
    ("B02", "blue"),
    ("B03", "green"),
    ("B04", "red"),
    ("B05", "rededge"),
    ("B06", "rededge"),
    ("B07", "rededge"),
    ("B08", "nir"),
    ("B8A", "nir08"),
    ("B11", "swir16"),
    ("B12", "swir22"),
]
STRZEGOM = [
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


def _item(item_id: str, date: str, assets: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "geometry": None,
        "links": [],
        "properties": {"datetime": f"{date}T10:00:00Z", **props},
        "assets": assets,
    }


def _strzegom_item(data: Path, date: str) -> dict[str, Any]:
    d = date.replace("-", "")
    classes = [{"value": 0, "name": "unlabelled", "nodata": True}] + [
        {"value": i + 1, "name": n, "color_hint": "1F77B4"} for i, n in enumerate(STRZEGOM)
    ]
    return _item(
        f"strzegom-{d}",
        date,
        {
            "image": {
                "href": str(data / "strzegom" / f"image_{d}.tif"),
                "roles": ["data"],
                "eo:bands": [{"name": n, "common_name": c} for n, c in S2_BANDS],
            },
            "labels": {
                "href": f"file://{data / 'strzegom' / f'labels_{d}.tif'}",
                "roles": ["labels"],
                "classification:classes": classes,
            },
        },
        constellation="sentinel-2",
    )


def _write(path: Path, d: dict[str, Any]) -> Path:
    path.write_text(json.dumps(d))
    return path


@pytest.mark.shared_data
def test_strzegom_item_registers(tmp_path: Path, shared_data: Path) -> None:
    path = _write(tmp_path / "item.json", _strzegom_item(shared_data, "2021-06-19"))
    spec = scene_spec_from_stac(path)
    assert spec.name == "strzegom-20210619" and spec.modality_names == ["s2"]
    (acq,) = spec.acquisitions
    assert acq.date == "2021-06-19" and acq.files == {"s2": [str(shared_data / "strzegom" / "image_20210619.tif")]}
    assert acq.labels == str(shared_data / "strzegom" / "labels_20210619.tif")
    assert [(c.id, c.name, c.color) for c in spec.classes][:2] == [
        (1, "conifer forest", "#1f77b4"),
        (2, "mixed forest", "#1f77b4"),
    ]
    scene = validate_scene_spec(spec, tmp_path / "home")
    assert scene.modality("s2").band_count == 10 and "UTM zone 33N" in scene.crs_wkt
    assert scene.modality("s2").band_names == tuple(n for n, _ in S2_BANDS)
    assert len(scene.classes) == 10 and scene.has_labels and scene.footprint_wgs84 is not None


@pytest.mark.shared_data
def test_strzegom_collection_gives_dated_acquisitions(tmp_path: Path, shared_data: Path) -> None:
    links = []
    for date in ("2022-06-19", "2021-06-19"):  # out of order on purpose
        _write(tmp_path / f"{date}.json", _strzegom_item(shared_data, date))
        links.append({"rel": "item", "href": f"./{date}.json"})
    coll = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "strzegom",
        "description": "two dates",
        "license": "other",
        "links": links,
        "extent": {
            "spatial": {"bbox": [[16.3, 50.9, 16.4, 51.0]]},
            "temporal": {"interval": [["2021-06-19T00:00:00Z", "2022-06-19T00:00:00Z"]]},
        },
    }
    spec = scene_spec_from_stac(_write(tmp_path / "collection.json", coll))
    assert [a.date for a in spec.acquisitions] == ["2021-06-19", "2022-06-19"]
    scene = validate_scene_spec(spec, tmp_path / "home")
    assert scene.dates == ("2021-06-19", "2022-06-19") and scene.description == "two dates"


@pytest.mark.shared_data
def test_north_carolina_bands_are_stacked_in_spectral_order(tmp_path: Path, shared_data: Path) -> None:
    nc = shared_data / "north_carolina"
    names = {"10": "blue", "20": "green", "30": "red", "40": "nir", "50": "swir16", "70": "swir22"}
    assets = {
        f"b{b}": {
            "href": str(nc / f"lsat7_2000_{b}.tif"),
            "roles": ["data"],
            "eo:bands": [{"name": f"ETM+ {b}", "common_name": c}],
        }
        for b, c in reversed(list(names.items()))
    }  # asset order is the reverse of the spectral order
    assets["labels"] = {
        "href": "strata.tif",
        "roles": ["labels"],
        "classification:classes": [{"value": i, "name": f"stratum {i}"} for i in range(1, 8)],
    }
    (tmp_path / "nc").mkdir()
    item = _item("nc", "2000-05-24", assets, platform="landsat-7")
    item["assets"]["labels"]["href"] = str(nc / "strata.tif")
    spec = scene_spec_from_stac(_write(tmp_path / "nc" / "item.json", item))
    assert spec.modality_names == ["landsat"]
    assert [Path(f).name for f in spec.acquisitions[0].files["landsat"]] == [f"lsat7_2000_{b}.tif" for b in names]
    scene = validate_scene_spec(spec, tmp_path / "home")
    assert scene.modality("landsat").band_count == 6 and len(scene.classes) == 7


def test_bad_stac_inputs_say_what_is_wrong(tmp_path: Path, make_raster) -> None:  # type: ignore[no-untyped-def]
    make_raster("img.tif", np.ones((3, 16, 16), np.uint16))
    ok = {"image": {"href": "img.tif", "roles": ["data"], "eo:bands": [{"name": "a"}] * 3}}
    missing = _item("m", "2021-01-01", {"image": {"href": "nope.tif", "roles": ["data"]}})
    with pytest.raises(StacError, match="does not exist"):
        scene_spec_from_stac(_write(tmp_path / "missing.json", missing))
    for href in ("https://example.org/x.tif", "s3://bucket/x.tif"):
        remote = _item("r", "2021-01-01", {**ok, "b": {"href": href, "roles": ["data"]}})
        with pytest.raises(RemoteHrefError, match="remote"):
            scene_spec_from_stac(_write(tmp_path / "remote.json", remote))
    with pytest.raises(StacError, match="neither datetime"):
        no_date = _item("d", "2021-01-01", ok)
        no_date["properties"] = {}
        scene_spec_from_stac(_write(tmp_path / "nodate.json", no_date))
    with pytest.raises(StacError, match="no imagery asset"):
        scene_spec_from_stac(_write(tmp_path / "empty.json", _item("e", "2021-01-01", {})))
    assert validate_scene_spec(scene_spec_from_stac(_write(tmp_path / "ok.json", _item("ok", "2021-01-01", ok))))


def test_missing_crs_is_an_error_unless_the_item_declares_one(tmp_path: Path, make_raster) -> None:  # type: ignore[no-untyped-def]
    make_raster("nocrs.tif", np.arange(256, dtype=np.uint16).reshape(1, 16, 16), crs=None)
    assets = {"image": {"href": "nocrs.tif", "roles": ["data"]}}
    with pytest.raises(StacError, match="no CRS"):
        scene_spec_from_stac(_write(tmp_path / "a.json", _item("a", "2021-01-01", assets)))
    declared = _item("b", "2021-01-01", assets, **{"proj:code": "EPSG:32633"})
    spec = scene_spec_from_stac(_write(tmp_path / "b.json", declared), vrt_dir=tmp_path / "vrt")
    (vrt,) = spec.acquisitions[0].files["image"]
    assert vrt.endswith(".vrt") and Path(vrt).parent == tmp_path / "vrt"
    scene = validate_scene_spec(spec, tmp_path / "home")
    assert "UTM zone 33N" in scene.crs_wkt and scene.modality("image").transform[0] == 10.0
    import rasterio

    with rasterio.open(vrt) as src:
        assert src.read(1)[3, 5] == 3 * 16 + 5  # the VRT reads the original pixels
    wrong = _item("c", "2021-01-01", {"image": {"href": "img.tif", "roles": ["data"], "proj:code": "EPSG:4326"}})
    make_raster("img.tif", np.ones((1, 16, 16), np.uint16))
    with pytest.raises(StacError, match="declares EPSG:4326"):
        scene_spec_from_stac(_write(tmp_path / "c.json", wrong))
    from core.data.catalog import SceneSpec

    raw = SceneSpec.model_validate(
        {"name": "raw", "acquisitions": [{"files": {"image": [str(tmp_path / "nocrs.tif")]}}]}
    )
    with pytest.raises(RasterError, match="no CRS"):  # the file itself, registered directly, is refused
        validate_scene_spec(raw, tmp_path / "home2")
