"""What Map review shows beside a run's class map: run labels, the vector runs made from the map (polygons of a
``vectorize`` run, points of a ``sample`` run) as map layers, and downloads named after their run.

A vectorize or sample run names its map by ``config["prediction_run"]``; its files are its artifacts (polygons:
``gpkg``, ``geojson``; sample: ``gpkg``, ``csv``, ``json``). Layers are GeoJSON FeatureCollections in EPSG:4326.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.models import RunRow
from db.runs import RunTracker

MAX_DRAWN_FEATURES = 5000
"""More polygons than this are not drawn (the browser would stall); their downloads are still offered."""
MIME = {
    ".tif": "image/tiff",
    ".gpkg": "application/geopackage+sqlite3",
    ".geojson": "application/geo+json",
    ".csv": "text/csv",
    ".json": "application/json",
}


@dataclass(frozen=True)
class VectorLayer:
    """The polygons or sample points of one run, drawn over the map of run ``parent``."""

    run_id: int
    parent: int
    what: str  # "polygons" | "sample points"
    files: dict[str, str]  # artifact name -> path (gpkg, geojson, csv, json)

    @property
    def name(self) -> str:
        return f"{self.what} (run {self.run_id})"

    @property
    def source(self) -> str:
        """The file the layer is drawn from: the GeoJSON (polygons) or the CSV (sample points)."""
        return self.files.get("geojson") or self.files["csv"]


LAYER_KINDS = {"vectorize": "polygons", "sample": "sample points"}
"""Run kinds whose files are layers of their parent map, and what the layer is called."""


def run_label(row: RunRow) -> str:
    """``run 12 - strzegom - unet (pipeline)``: the run, its scene, its model (baselines: their method)."""
    cfg = row.config or {}
    if row.kind == "baseline":
        what = f"{cfg.get('method', '?')} baseline"
    elif row.kind == "predict":
        what = f"predict with {Path(str(cfg.get('model', '?'))).parent.name or cfg.get('model')}"
    else:
        what = f"{cfg.get('model', row.kind)} ({row.kind})"
    return f"run {row.id} - {cfg.get('scene', '?')} - {what}"


def parent_run(row: RunRow) -> int | None:
    """The map run a vectorize / sample / assess run was made from (None for other runs)."""
    value = (row.config or {}).get("prediction_run")
    return int(value) if isinstance(value, int) else None


def vector_layers(tracker: RunTracker, parent: int, limit: int = 500) -> list[VectorLayer]:
    """Succeeded vectorize and sample runs of map run ``parent`` whose files exist, newest first."""
    out = []
    for kind, what in LAYER_KINDS.items():
        for r in tracker.list(kind=kind, status="succeeded", limit=limit):
            files = {k: v for k, v in (r.artifacts or {}).items() if isinstance(v, str) and Path(v).exists()}
            if parent_run(r) == parent and ("geojson" in files or "csv" in files):
                out.append(VectorLayer(r.id, parent, what, files))
    return sorted(out, key=lambda layer: -layer.run_id)


def sample_geojson(csv_path: str) -> dict[str, Any]:
    """The sample's points (``lon``, ``lat`` columns of its CSV) as a FeatureCollection with their attributes."""
    features = []
    with open(csv_path, newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                lon, lat = float(r["lon"]), float(r["lat"])
            except (KeyError, ValueError):
                continue  # a map that is not georeferenced has no lon/lat
            if math.isfinite(lon) and math.isfinite(lat):
                props = {k: v for k, v in r.items() if k not in ("lon", "lat")}
                features.append(
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}
                )
    return {"type": "FeatureCollection", "features": features}


def layer_geojson(layer: VectorLayer) -> dict[str, Any]:
    """The layer as GeoJSON in EPSG:4326 (polygons: the run's GeoJSON file; points: from the sample CSV)."""
    if "geojson" in layer.files:
        return json.loads(Path(layer.files["geojson"]).read_text())
    if "csv" in layer.files:
        return sample_geojson(layer.files["csv"])
    return {"type": "FeatureCollection", "features": []}


def attributes_csv(geojson: dict[str, Any]) -> str:
    """The features' attributes (no geometry) as CSV text, one row per feature."""
    rows = [f.get("properties") or {} for f in geojson.get("features", [])]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=columns)
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    return out.getvalue()


def download_name(run_id: int, path: str | Path) -> str:
    """``run-12-prediction.tif``: a downloaded file named after its run."""
    return f"run-{run_id}-{Path(path).name}"


@dataclass(frozen=True)
class Download:
    label: str
    data: bytes
    file_name: str
    mime: str


def layer_downloads(layer: VectorLayer, geojson: dict[str, Any]) -> list[Download]:
    """GeoPackage, GeoJSON and CSV of a layer, named after its run (GeoJSON / CSV made from the other files when
    the run did not write them)."""
    out: list[Download] = []
    stem = "polygons" if layer.what == "polygons" else "sample"
    gpkg = layer.files.get("gpkg")
    if gpkg:
        out.append(Download("GPKG", Path(gpkg).read_bytes(), download_name(layer.run_id, gpkg), MIME[".gpkg"]))
    text = Path(layer.files["geojson"]).read_bytes() if "geojson" in layer.files else json.dumps(geojson).encode()
    out.append(Download("GeoJSON", text, f"run-{layer.run_id}-{stem}.geojson", MIME[".geojson"]))
    table = Path(layer.files["csv"]).read_bytes() if "csv" in layer.files else attributes_csv(geojson).encode()
    out.append(Download("CSV", table, f"run-{layer.run_id}-{stem}.csv", MIME[".csv"]))
    return out


def drawable(geojson: dict[str, Any], limit: int | None = None) -> bool:
    """Whether a layer is small enough to draw in the browser (at most ``limit``, default
    :data:`MAX_DRAWN_FEATURES`, features)."""
    return len(geojson.get("features", [])) <= (MAX_DRAWN_FEATURES if limit is None else limit)


def class_colours(classes: Sequence[Any]) -> dict[int, str]:
    """Class id -> ``#rrggbb`` from the map's classes (:class:`core.data.scene.ClassInfo`)."""
    return {int(c.id): c.color for c in classes}
