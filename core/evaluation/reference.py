"""Reference labels of a sample: interpreted labels from a file, or labels taken from an existing label raster.

Interpreted labels (CSV or GeoPackage, e.g. the sample files with ``ref_class`` filled in) are validated: every
sample id exactly once, no unknown ids, every class a class of the map (given as id or name), and, when the file
carries ``map_class``, the same map class as the sample (otherwise the labels were made for another sample).

Labels taken from a label raster were not collected for this sample: they inherit the raster's own errors, and
points the raster does not cover are dropped, which keeps the design unbiased only if labels are missing at
random. :attr:`ReferenceLabels.note` says so, and the report prints it.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fiona
import numpy as np
from rasterio.windows import Window

from core.data.rasters import open_raster
from core.evaluation.errors import ReferenceLabelError, SampleMismatchError
from core.evaluation.sample_design import ReferenceSample

log = logging.getLogger(__name__)

_MAX_LISTED = 10


@dataclass(frozen=True)
class ReferenceLabels:
    """Reference class of the labelled points of a sample.

    Attributes:
        source: ``"interpreted"`` (collected for this sample) or ``"label_raster"`` (taken from a raster).
        source_path: the labels file or raster.
        ids, map_class, ref_class: labelled points (same order), sample ids with their map and reference class.
        n_sample: points in the sample.
        not_covered: sample ids without a label (label raster only).
        note: what the report must say about where the labels come from.
    """

    source: Literal["interpreted", "label_raster"]
    source_path: str
    ids: tuple[int, ...]
    map_class: tuple[int, ...]
    ref_class: tuple[int, ...]
    n_sample: int
    not_covered: tuple[int, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the per-point lists)."""
        return {
            "source": self.source,
            "source_path": self.source_path,
            "n_labelled": len(self.ids),
            "n_sample": self.n_sample,
            "n_not_covered": len(self.not_covered),
            "note": self.note,
        }


def _listed(values: list[Any]) -> str:
    head = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return f"[{head}{', ...' if len(values) > _MAX_LISTED else ''}] ({len(values)})"


def _read_table(path: Path, layer: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and field names of a CSV or of a vector layer (GeoPackage, shapefile, ...)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return list(reader), list(reader.fieldnames or [])
    layers = fiona.listlayers(path)
    name = layer or ("sample" if "sample" in layers else layers[0])
    with fiona.open(path, layer=name) as src:
        return [dict(f["properties"]) for f in src], list(src.schema["properties"])


def _class_lookup(sample: ReferenceSample) -> dict[str, int]:
    look = {str(c): c for c in sample.map.class_ids}
    look.update({n.strip().lower(): c for c, n in zip(sample.map.class_ids, sample.map.class_names)})
    return look


def _parse_ids(rows: list[dict[str, Any]], id_field: str, path: Path) -> list[int]:
    ids, bad = [], []
    for r in rows:
        v = r.get(id_field)
        try:
            ids.append(int(float(str(v).strip())))
        except ValueError:
            bad.append(repr(v))
    if bad:
        raise ReferenceLabelError(
            f"{str(path)!r}: {id_field!r} values {_listed(bad)} are not integer sample ids; "
            "keep the id column of the sample file unchanged"
        )
    return ids


def _check_ids(ids: list[int], sample: ReferenceSample, path: Path) -> None:
    known = {p.id for p in sample.points}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise ReferenceLabelError(
            f"{str(path)!r} has ids {_listed(unknown)} that are not in the sample (ids "
            f"1..{len(known)}); label the points of this sample, or give its own sample file"
        )
    dup = sorted(i for i, k in Counter(ids).items() if k > 1)
    if dup:
        raise ReferenceLabelError(
            f"{str(path)!r} labels ids {_listed(dup)} more than once; give each sample id exactly one row"
        )
    missing = sorted(known - set(ids))
    if missing:
        raise ReferenceLabelError(
            f"{str(path)!r} has no label for sample ids {_listed(missing)}; every sample "
            "point needs one row with its reference class"
        )


def _parse_classes(
    rows: list[dict[str, Any]], ids: list[int], field: str, sample: ReferenceSample, path: Path
) -> list[int]:
    look = _class_lookup(sample)
    out, bad = [], []
    for i, r in zip(ids, rows):
        raw = "" if r.get(field) is None else str(r.get(field)).strip()
        key = raw.removesuffix(".0")
        cid = look.get(key) or look.get(key.lower())
        if cid is None:
            bad.append(f"id {i}: {raw!r}")
        out.append(cid if cid is not None else 0)
    if bad:
        choices = ", ".join(f"{c}={n}" for c, n in zip(sample.map.class_ids, sample.map.class_names))
        raise ReferenceLabelError(
            f"{str(path)!r}: {field!r} values {_listed(bad)} are not classes of the scene; "
            f"expected one of {choices} (id or name) for every point"
        )
    return out


def _check_map_class(rows: list[dict[str, Any]], ids: list[int], sample: ReferenceSample, path: Path) -> None:
    if not rows or "map_class" not in rows[0]:
        return
    by_id = {p.id: p.map_class for p in sample.points}
    wrong = [
        i
        for i, r in zip(ids, rows)
        if str(r.get("map_class")).strip() not in ("", "None") and int(float(str(r["map_class"]))) != by_id[i]
    ]
    if wrong:
        raise SampleMismatchError(
            f"{str(path)!r}: the map class of ids {_listed(wrong)} differs from the sample "
            f"drawn from {sample.map.path!r}; these labels were made for another sample or map"
        )


def read_reference_labels(
    path: str | Path,
    sample: ReferenceSample,
    class_field: str = "ref_class",
    id_field: str = "id",
    layer: str | None = None,
) -> ReferenceLabels:
    """Read and validate interpreted reference labels for ``sample`` (see module docstring).

    Args:
        path: CSV or vector file (GeoPackage layer ``sample`` by default) with ``id_field`` and ``class_field``.
        sample: the sample the labels were collected for.
        class_field: column with the reference class (class id or name).
        id_field: column with the sample id.
        layer: vector layer to read (default ``sample`` or the first layer).

    Raises:
        ReferenceLabelError: missing columns, unknown, duplicate or missing ids, classes outside the scene's.
        SampleMismatchError: the file's map classes differ from the sample's.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ReferenceLabelError(
            f"reference labels file {str(p)!r} does not exist; give the interpreted CSV or GeoPackage"
        )
    rows, fields = _read_table(p, layer)
    for f in (id_field, class_field):
        if f not in fields:
            raise ReferenceLabelError(
                f"{str(p)!r} has no column {f!r} (columns: {fields}); name the id and class "
                "columns with id_field / class_field"
            )
    ids = _parse_ids(rows, id_field, p)
    _check_ids(ids, sample, p)
    ref = _parse_classes(rows, ids, class_field, sample, p)
    _check_map_class(rows, ids, sample, p)
    by_id = {q.id: q.map_class for q in sample.points}
    order = np.argsort(ids)
    return ReferenceLabels(
        source="interpreted",
        source_path=str(p),
        ids=tuple(ids[k] for k in order),
        map_class=tuple(by_id[ids[k]] for k in order),
        ref_class=tuple(ref[k] for k in order),
        n_sample=len(sample.points),
        note=f"Reference labels interpreted for this sample ({len(ids)} points, file {p.name}).",
    )


def _label_pixels(src: Any, sample: ReferenceSample) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each sample point in the label raster ``src`` (reprojecting if its CRS differs)."""
    x = np.array([q.x for q in sample.points])
    y = np.array([q.y for q in sample.points])
    if sample.map.crs_wkt and src.crs and src.crs.to_wkt() != sample.map.crs_wkt:
        from pyproj import CRS, Transformer

        t = Transformer.from_crs(CRS.from_wkt(sample.map.crs_wkt), CRS.from_wkt(src.crs.to_wkt()), always_xy=True)
        x, y = t.transform(x, y)
    if not sample.map.georeferenced:
        return np.array([q.row for q in sample.points]), np.array([q.col for q in sample.points])
    inv = ~src.transform
    cols = inv.a * x + inv.b * y + inv.c
    rows = inv.d * x + inv.e * y + inv.f
    return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def reference_from_label_raster(label_path: str | Path, sample: ReferenceSample) -> ReferenceLabels:
    """Reference classes of the sample points read from an existing label raster (0 / nodata = no label).

    Raises:
        ReferenceLabelError: the raster has values at sample points that are not classes of the scene, or covers
            none of the sample points.
    """
    p = Path(label_path).expanduser().resolve()
    with open_raster(p) as src:
        rows, cols = _label_pixels(src, sample)
        inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
        vals = np.zeros(len(rows), dtype=np.float64)
        for k in np.flatnonzero(inside):  # one-pixel reads: memory stays bounded whatever the raster's size
            vals[k] = src.read(1, window=Window(int(cols[k]), int(rows[k]), 1, 1))[0, 0]
        nodata = src.nodata
    covered = inside & np.isfinite(vals) & (vals != 0) & ((vals != nodata) if nodata is not None else True)
    bad = sorted({float(v) for v in vals[covered] if float(v) not in sample.map.class_ids})
    if bad:
        raise ReferenceLabelError(
            f"label raster {str(p)!r} has values {_listed(bad)} at sample points; expected "
            f"classes of the scene {list(sample.map.class_ids)} (0 = unlabelled); give a label "
            "raster with the scene's class ids"
        )
    if not covered.any():
        raise ReferenceLabelError(
            f"label raster {str(p)!r} labels none of the {len(sample.points)} sample points; "
            "give a label raster that covers the sample, or interpreted labels"
        )
    pts = sample.points
    keep = [k for k in range(len(pts)) if covered[k]]
    dropped = tuple(pts[k].id for k in range(len(pts)) if not covered[k])
    note = (
        f"Reference labels were NOT collected for this sample: they were read from the label raster {p.name} "
        f"where it covers the sample points ({len(keep)} of {len(pts)} points; {len(dropped)} uncovered points "
        "dropped). The estimates inherit that raster's own errors, and dropping uncovered points keeps them "
        "unbiased only if the raster's coverage is unrelated to the classes."
    )
    log.warning(note)
    return ReferenceLabels(
        source="label_raster",
        source_path=str(p),
        ids=tuple(pts[k].id for k in keep),
        map_class=tuple(pts[k].map_class for k in keep),
        ref_class=tuple(int(vals[k]) for k in keep),
        n_sample=len(pts),
        not_covered=dropped,
        note=note,
    )
