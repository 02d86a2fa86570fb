"""What Map review shows beside a map: run labels, the vector runs made from a map, their files as downloads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from app.services import map_layers
from db.runs import RunTracker


def test_run_labels_name_the_model_or_the_baseline(db_url: str) -> None:
    t = RunTracker(db_url)
    p = t.create("pipeline", {"kind": "pipeline", "scene": "s", "model": "unet"})
    b = t.create("baseline", {"kind": "baseline", "scene": "s", "method": "knn", "split": "test"})
    q = t.create("predict", {"kind": "predict", "scene": "s", "model": "/h/runs/run-00007/model"})
    assert map_layers.run_label(t.get(p)) == f"run {p} - s - unet (pipeline)"
    assert map_layers.run_label(t.get(b)) == f"run {b} - s - knn baseline"
    assert map_layers.run_label(t.get(q)) == f"run {q} - s - predict with run-00007"


def test_vector_layers_of_a_map(db_url: str, tmp_path: Path) -> None:
    t = RunTracker(db_url)
    gj = tmp_path / "polygons.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    sample_csv = tmp_path / "sample.csv"
    with sample_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "x", "y", "lon", "lat", "map_class", "map_class_name", "ref_class"])
        w.writerow([1, 500005, 5599995, 15.0, 50.5, 2, "water", ""])
        w.writerow([2, 5, 5, "", "", 1, "forest", ""])  # a map without a CRS has no lon/lat: not drawn
    runs = {}
    for kind, parent, files in (
        ("vectorize", 1, {"geojson": str(gj), "driver_log": str(gj)}),
        ("sample", 1, {"csv": str(sample_csv)}),
        ("vectorize", 2, {"geojson": str(gj)}),  # another map's
        ("vectorize", 1, {"driver_log": str(gj)}),  # no layer file
        ("sample", 1, {"csv": str(tmp_path / "gone.csv")}),  # its file vanished
    ):
        rid = t.create(kind, {"kind": kind, "prediction_run": parent})
        t.succeed(rid, artifacts=files)
        runs.setdefault((kind, parent), rid)
    found = map_layers.vector_layers(t, 1)
    assert [(v.what, v.run_id) for v in found] == [
        ("sample points", runs[("sample", 1)]),
        ("polygons", runs[("vectorize", 1)]),
    ]
    points = map_layers.layer_geojson(found[0])
    assert points["features"] == [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [15.0, 50.5]},
            "properties": {
                "id": "1",
                "x": "500005",
                "y": "5599995",
                "map_class": "2",
                "map_class_name": "water",
                "ref_class": "",
            },
        }
    ]
    downloads = map_layers.layer_downloads(found[0], points)
    assert [(d.label, d.file_name) for d in downloads] == [
        ("GeoJSON", f"run-{found[0].run_id}-sample.geojson"),
        ("CSV", f"run-{found[0].run_id}-sample.csv"),
    ]
    assert json.loads(downloads[0].data)["features"][0]["geometry"]["coordinates"] == [15.0, 50.5]


def test_attributes_csv_and_download_names() -> None:
    fc = {
        "features": [
            {"properties": {"class_id": 1, "area_ha": 2.5}},
            {"properties": {"class_id": 2, "mean_conf": None}},
        ]
    }
    rows = list(csv.DictReader(map_layers.attributes_csv(fc).splitlines()))
    assert rows == [
        {"class_id": "1", "area_ha": "2.5", "mean_conf": ""},
        {"class_id": "2", "area_ha": "", "mean_conf": ""},
    ]
    assert map_layers.download_name(12, "/h/runs/run-00012/prediction.tif") == "run-12-prediction.tif"
    assert map_layers.drawable({"features": [1, 2]}, limit=2) and not map_layers.drawable(
        {"features": [1, 2, 3]}, limit=2
    )
