"""Reference-sample files: GeoPackage and CSV for photo-interpretation, plus the sample's JSON metadata.

``write_sample`` writes ``<stem>.gpkg`` (point layer ``sample`` in the map's CRS, and an attribute table
``sample_metadata`` holding the metadata JSON), ``<stem>.csv`` and ``<stem>.json``. Both the GeoPackage and the
CSV have the columns ``SAMPLE_COLUMNS`` with an empty ``ref_class`` for the interpreter to fill. The JSON (and the
GeoPackage's metadata table) records the map's path, size, CRS, transform and classes, the design and every point,
so labels are checked against the sample and the sample against the map it was drawn from.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import fiona
from fiona.crs import CRS as FionaCRS

from core.data.vectors import GPKG_OPTIONS
from core.errors import ConfigError
from core.evaluation.sample_design import ReferenceSample

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("id", "x", "y", "lon", "lat", "map_class", "map_class_name", "ref_class")
_LAYER = "sample"
_META_LAYER = "sample_metadata"


def _rows(sample: ReferenceSample) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "x": p.x,
            "y": p.y,
            "lon": p.lon,
            "lat": p.lat,
            "map_class": p.map_class,
            "map_class_name": sample.map.name_of(p.map_class),
            "ref_class": None,
        }
        for p in sample.points
    ]


def write_sample_csv(sample: ReferenceSample, path: str | Path) -> Path:
    """CSV with ``SAMPLE_COLUMNS`` (x, y in the map's CRS; lon, lat in EPSG:4326; ref_class empty)."""
    p = Path(path)
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS)
        w.writeheader()
        for r in _rows(sample):
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    return p


def write_sample_gpkg(sample: ReferenceSample, path: str | Path) -> Path:
    """GeoPackage: layer ``sample`` (points at pixel centres, map CRS) and table ``sample_metadata`` (JSON)."""
    p = Path(path)
    p.unlink(missing_ok=True)
    schema = {
        "geometry": "Point",
        "properties": {
            "id": "int",
            "x": "float",
            "y": "float",
            "lon": "float",
            "lat": "float",
            "map_class": "int",
            "map_class_name": "str",
            "ref_class": "str",
        },
    }
    crs = FionaCRS.from_wkt(sample.map.crs_wkt) if sample.map.crs_wkt else None
    with fiona.open(p, "w", driver="GPKG", layer=_LAYER, schema=schema, crs=crs, **GPKG_OPTIONS) as dst:
        dst.writerecords(
            {"geometry": {"type": "Point", "coordinates": (r["x"], r["y"])}, "properties": r} for r in _rows(sample)
        )
    with fiona.open(
        p,
        "w",
        driver="GPKG",
        layer=_META_LAYER,
        schema={"geometry": "None", "properties": {"json": "str"}},
        **GPKG_OPTIONS,
    ) as dst:
        dst.write({"geometry": None, "properties": {"json": json.dumps(sample.to_dict())}})
    return p


def write_sample(sample: ReferenceSample, out_dir: str | Path, stem: str = "sample") -> dict[str, str]:
    """Write ``<stem>.gpkg``, ``<stem>.csv`` and ``<stem>.json`` into ``out_dir``.

    Returns:
        ``{"gpkg": path, "csv": path, "json": path}``.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    meta = d / f"{stem}.json"
    meta.write_text(json.dumps(sample.to_dict(), indent=1))
    out = {
        "gpkg": str(write_sample_gpkg(sample, d / f"{stem}.gpkg")),
        "csv": str(write_sample_csv(sample, d / f"{stem}.csv")),
        "json": str(meta),
    }
    log.info("wrote sample of %d points to %s", len(sample.points), out)
    return out


def read_sample(path: str | Path) -> ReferenceSample:
    """Read a sample: its ``.json``, or a ``.gpkg``/``.csv`` whose metadata sits beside it or inside the GeoPackage.

    Raises:
        ConfigError: the file is missing or holds no sample metadata.
    """
    p = Path(path).expanduser().resolve()
    candidates = [p] if p.suffix.lower() == ".json" else [p.with_suffix(".json")]
    for c in candidates:
        if c.is_file():
            return _from_json(c.read_text(), c)
    if p.suffix.lower() == ".gpkg" and p.is_file() and _META_LAYER in fiona.listlayers(p):
        with fiona.open(p, layer=_META_LAYER) as src:
            for feat in src:
                return _from_json(feat["properties"]["json"], p)
    raise ConfigError(
        f"no sample metadata for {str(p)!r}: expected {str(candidates[0])!r} or a GeoPackage with a "
        f"{_META_LAYER!r} table, as written by write_sample; give the sample's .json or .gpkg"
    )


def _from_json(text: str, where: Path) -> ReferenceSample:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(where)!r} is not valid JSON ({exc}); give the .json written by write_sample") from exc
    if not isinstance(d, dict) or d.get("kind") != "stratified_random_sample":
        raise ConfigError(
            f"{str(where)!r} is not a sample written by write_sample (no kind "
            "'stratified_random_sample'); give the sample's .json or .gpkg"
        )
    return ReferenceSample.from_dict(d)
