"""The imagery registry: validate a scene's files and record them as a :class:`core.data.scene.Scene`.

A :class:`SceneSpec` is the registration request (JSON, so the CLI reads it from a file). :func:`register_scene`
opens every file, checks that band files line up, that modalities cover the same ground, that labels sit on the
label grid and hold only declared classes, rasterises vector labels, and only then stores the scene: any failure
raises a domain error before anything is written to the database. :func:`verify_files` tells, before a scene is
read, whether any of its files changed since registration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pyproj import Transformer

from core.configs import load_json_file
from core.data.rasters import (
    CRS_TOLERANCE_PX,
    RasterInfo,
    crs_name,
    crs_shift_px,
    file_fingerprint,
    fingerprint_change,
    grid_bounds,
    grid_differences,
    inspect_raster,
    unique_values,
)
from core.data.scene import Acquisition, ClassInfo, FileFingerprint, Modality, Scene
from core.errors import (
    GridMismatchError,
    LabelError,
    RasterError,
    SceneExistsError,
    SceneFileChangedError,
    SceneNotFoundError,
)

log = logging.getLogger(__name__)

DEFAULT_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
"""Colours given, in order of class id, to classes declared without one (matplotlib's tab10 + tab20 light)."""

FOOTPRINT_POINTS_PER_EDGE = 16


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassSpec(_Frozen):
    """A class as declared by the user; ``color`` ('#rrggbb') defaults to :data:`DEFAULT_PALETTE`."""

    id: int = Field(ge=1, le=255)
    name: str = Field(min_length=1)
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")


class AcquisitionSpec(_Frozen):
    """One date: ``files`` maps a modality name to its raster paths (bands stacked in that order).

    ``labels`` is a label raster on the label grid; ``label_vector`` a polygon file (shapefile, GeoPackage,
    GeoJSON) whose ``SceneSpec.label_field`` holds class ids or names. At most one of the two.
    """

    date: str | None = None
    files: dict[str, list[str]]
    labels: str | None = None
    label_vector: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AcquisitionSpec:
        if not self.files:
            raise ValueError(f"acquisition {self.date!r} lists no files; give files={{modality: [paths]}}")
        for mod, paths in self.files.items():
            if not paths:
                raise ValueError(f"modality {mod!r} of acquisition {self.date!r} lists no files")
        if self.labels and self.label_vector:
            raise ValueError(f"acquisition {self.date!r} gives both labels and label_vector; give one of them")
        return self


class SceneSpec(_Frozen):
    """A registration request. Paths may be relative (to the working directory, or to the JSON file's folder
    when read with :meth:`from_json_file`)."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    georeferenced: bool = True
    classes: list[ClassSpec] = []
    label_modality: str | None = None
    label_field: str | None = None
    acquisitions: list[AcquisitionSpec] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[ClassSpec]) -> list[ClassSpec]:
        ids = [c.id for c in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"class ids {dup} are declared more than once; give each class its own id")
        return v

    @model_validator(mode="after")
    def _check(self) -> SceneSpec:
        mods = list(self.acquisitions[0].files)
        for a in self.acquisitions[1:]:
            if list(a.files) != mods:
                raise ValueError(
                    f"acquisition {a.date!r} has modalities {list(a.files)} but the first has {mods}; "
                    "every acquisition must list the same modalities in the same order"
                )
        dates = [a.date for a in self.acquisitions]
        if len(dates) > 1 and len(set(dates)) != len(dates):
            raise ValueError(f"acquisition dates {dates} repeat; give each acquisition a distinct date")
        if self.label_modality is not None and self.label_modality not in mods:
            raise ValueError(f"label_modality {self.label_modality!r} is not one of the modalities {mods}")
        if any(a.label_vector for a in self.acquisitions) and not self.label_field:
            raise ValueError("label_vector needs label_field: the attribute holding each polygon's class id or name")
        if any(a.labels or a.label_vector for a in self.acquisitions) and not self.classes:
            raise ValueError("labels are given but no classes are declared; add classes=[{id, name}, ...]")
        return self

    @property
    def modality_names(self) -> list[str]:
        return list(self.acquisitions[0].files)

    @property
    def primary_modality(self) -> str:
        """The modality whose grid labels use (``label_modality`` or the first)."""
        return self.label_modality or self.modality_names[0]

    def class_infos(self) -> tuple[ClassInfo, ...]:
        """Declared classes sorted by id, missing colours filled from :data:`DEFAULT_PALETTE`."""
        out = []
        for c in sorted(self.classes, key=lambda c: c.id):
            color = c.color or DEFAULT_PALETTE[(c.id - 1) % len(DEFAULT_PALETTE)]
            out.append(ClassInfo(id=c.id, name=c.name, color=color.lower()))
        return tuple(out)

    @classmethod
    def from_json_file(cls, path: str | Path) -> SceneSpec:
        """Read a spec from JSON; relative file paths are taken relative to the JSON file's folder."""
        p = Path(path)
        raw: dict[str, Any] = load_json_file(p, "scene spec")
        base = p.resolve().parent

        def rel(x: str | None) -> str | None:
            return None if x is None else str(base / Path(x).expanduser())

        for a in raw.get("acquisitions", []):
            a["files"] = {m: [rel(f) for f in fs] for m, fs in a.get("files", {}).items()}
            for k in ("labels", "label_vector"):
                if a.get(k):
                    a[k] = rel(a[k])
        return cls.model_validate(raw)


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _check_georef(info: RasterInfo, georeferenced: bool) -> None:
    if not georeferenced:
        return
    if info.crs_wkt is None:
        raise RasterError(
            f"{info.path!r} has no CRS; assign one (gdal_edit.py -a_srs EPSG:xxxx) or register the "
            "scene with georeferenced=False to work in pixel coordinates"
        )
    if not info.georeferenced_transform:
        raise RasterError(
            f"{info.path!r} has no geotransform; add one (gdal_edit.py -a_ullr ...) or register the "
            "scene with georeferenced=False to work in pixel coordinates"
        )


def _modality(name: str, infos_by_acq: list[list[RasterInfo]], georeferenced: bool) -> Modality:
    """Check one modality's files (within and across acquisitions) and describe its stacked grid."""
    ref = infos_by_acq[0][0]
    for infos in infos_by_acq:
        for info in infos:
            _check_georef(info, georeferenced)
            diffs = grid_differences(ref, info, check_crs=georeferenced)
            if diffs:
                raise GridMismatchError(
                    f"band file {info.path!r} of modality {name!r} does not line up with {ref.path!r}: "
                    f"{'; '.join(diffs)}. Resample it onto the same grid (gdalwarp -te/-tr/-t_srs) before registering"
                )
    counts = [sum(i.count for i in infos) for infos in infos_by_acq]
    if len(set(counts)) > 1:
        raise GridMismatchError(
            f"modality {name!r} has {counts[0]} bands in its first acquisition but {counts} across "
            "acquisitions; every date must stack the same bands"
        )
    dtypes = [d for infos in infos_by_acq for i in infos for d in i.dtypes]
    dtype = np.result_type(*dtypes).name
    nodata: list[float | None] = []
    per_band = [[v for i in infos for v in i.nodata] for infos in infos_by_acq]
    for b in range(counts[0]):
        declared = {v for v in (acq[b] for acq in per_band) if v is not None}
        if len(declared) > 1:
            raise RasterError(
                f"band {b + 1} of modality {name!r} declares different nodata values across "
                f"acquisitions ({sorted(declared)}); rewrite the files with one nodata value"
            )
        nodata.append(declared.pop() if declared else None)
    for infos in infos_by_acq:
        for info in infos:
            missing = list(info.undeclared_nodata)
            if missing:
                which = (
                    "its band"
                    if info.count == 1
                    else f"any of its {info.count} bands"
                    if len(missing) == info.count
                    else f"bands {missing}"
                )
                floats = all(np.dtype(d).kind == "f" for d in info.dtypes)
                log.warning(
                    "%s declares no nodata for %s: %s (set one with gdal_edit.py -a_nodata if some values "
                    "mean 'no data')",
                    info.path,
                    which,
                    "only NaN is treated as nodata" if floats else "every value is treated as valid",
                )
    descs = [d for i in infos_by_acq[0] for d in i.descriptions]
    band_names = tuple(d or f"band {k + 1}" for k, d in enumerate(descs)) if any(descs) else ()
    return Modality(
        name=name,
        width=ref.width,
        height=ref.height,
        transform=ref.transform,
        band_count=counts[0],
        dtype=dtype,
        nodata=tuple(nodata),
        band_names=band_names,
    )


def _check_extents(mods: dict[str, Modality], primary: str) -> None:
    p = mods[primary]
    pb = grid_bounds(p.transform, p.width, p.height)
    for m in mods.values():
        if m.name == primary:
            continue
        mb = grid_bounds(m.transform, m.width, m.height)
        tol = max(m.resolution, p.resolution, abs(m.transform[4]), abs(p.transform[4]))
        if max(abs(x - y) for x, y in zip(pb, mb, strict=True)) > tol:
            raise GridMismatchError(
                f"modality {m.name!r} covers {tuple(round(v, 3) for v in mb)} but the label modality {primary!r} "
                f"covers {tuple(round(v, 3) for v in pb)} (xmin, ymin, xmax, ymax): they do not cover the same ground; "
                "clip both to the common extent before registering"
            )


def _check_label_raster(
    info: RasterInfo, grid_ref: RasterInfo, primary: str, classes: Sequence[ClassInfo], georeferenced: bool
) -> None:
    _check_georef(info, georeferenced)
    if info.count != 1:
        raise LabelError(
            f"label raster {info.path!r} has {info.count} bands; labels must be a single band of class ids"
        )
    diffs = grid_differences(grid_ref, info, check_crs=georeferenced)
    if diffs:
        raise LabelError(
            f"label raster {info.path!r} is not on the label grid of modality {primary!r} "
            f"({grid_ref.path!r}): {'; '.join(diffs)}. Rasterise or resample the labels onto that grid "
            "(gdalwarp -r near -te/-tr/-t_srs)"
        )
    values = unique_values(info.path)
    nodata = info.nodata[0]
    allowed = {0} | {c.id for c in classes}
    bad = [
        v
        for v in values.tolist()
        if not (np.isnan(v) or (nodata is not None and v == nodata) or (float(v).is_integer() and int(v) in allowed))
    ]
    if bad:
        shown = [int(v) if float(v).is_integer() else v for v in bad[:20]]
        raise LabelError(
            f"label raster {info.path!r} holds values {shown}{' ...' if len(bad) > 20 else ''} that are "
            f"not declared classes {[(c.id, c.name) for c in classes]} (0 means unlabelled); declare "
            "them as classes or recode the raster"
        )


def _class_id(value: Any, classes: Sequence[ClassInfo]) -> int | None:
    """A polygon attribute as a class id: an integer id, or a class name (case-insensitive)."""
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return int(value) if int(value) in {c.id for c in classes} else None
    if isinstance(value, str):
        if value.strip().isdigit():
            return _class_id(int(value.strip()), classes)
        by_name = {c.name.lower(): c.id for c in classes}
        return by_name.get(value.strip().lower())
    return None


def rasterize_vector_labels(
    path: str, field: str, classes: Sequence[ClassInfo], crs_wkt: str | None, grid: RasterInfo
) -> np.ndarray:
    """Burn polygons of ``path`` onto ``grid`` with the class of their ``field`` (ids or class names).

    Geometries are reprojected from the file's CRS to ``crs_wkt`` (the scene CRS; ``None`` for a scene in pixel
    coordinates, where the file's coordinates are used as they are). Later polygons win where polygons overlap.

    Returns:
        ``(rows, cols)`` uint8 class ids, 0 where no polygon covers a pixel centre.

    Raises:
        LabelError: unreadable file, missing field, non-polygon geometry, undeclared class values, no CRS on a
        georeferenced scene, or no polygon overlapping the grid.
    """
    import fiona
    from fiona.errors import FionaError
    from fiona.transform import transform_geom
    from rasterio.features import rasterize

    try:
        src = fiona.open(path)
    except (FionaError, OSError) as exc:
        raise LabelError(
            f"label vector {path!r} cannot be read ({exc}); give a shapefile, GeoPackage or GeoJSON of polygons"
        ) from exc
    with src:
        fields = list(src.schema["properties"])
        if field not in fields:
            raise LabelError(
                f"label vector {path!r} has no field {field!r}; its fields are {fields}: set "
                "label_field to the one holding class ids or names"
            )
        src_wkt = src.crs.to_wkt() if src.crs else None
        if crs_wkt is not None and not src_wkt:
            raise LabelError(
                f"label vector {path!r} has no CRS (no .prj?); add one so its polygons can be placed on the scene"
            )
        shapes: list[tuple[Any, int]] = []
        bad: set[Any] = set()
        for feat in src:
            geom = feat.geometry
            if geom is None:
                continue
            if geom.type not in ("Polygon", "MultiPolygon"):
                raise LabelError(
                    f"label vector {path!r} holds a {geom.type} (feature {feat.id}); labels must be polygons"
                )
            cid = _class_id(feat.properties[field], classes)
            if cid is None:
                bad.add(feat.properties[field])
                continue
            g = transform_geom(src_wkt, crs_wkt, geom) if crs_wkt and src_wkt else geom
            shapes.append((g.__geo_interface__ if hasattr(g, "__geo_interface__") else g, cid))
    if bad:
        raise LabelError(
            f"label vector {path!r} field {field!r} holds values {sorted(map(str, bad))} that are not "
            f"declared classes {[(c.id, c.name) for c in classes]}; declare them or recode the field"
        )
    if not shapes:
        raise LabelError(f"label vector {path!r} holds no polygons")
    out = rasterize(shapes, out_shape=(grid.height, grid.width), transform=grid.transform, fill=0, dtype="uint8")
    if not out.any():
        raise LabelError(
            f"no polygon of {path!r} covers a pixel of the label grid {grid.path!r}; check that the "
            "file and the imagery show the same place (and the file's CRS)"
        )
    return out


def _write_labels(labels: np.ndarray, grid: RasterInfo, crs_wkt: str | None, out: Path) -> None:
    import rasterio
    from affine import Affine

    out.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint8",
        transform=Affine(*grid.transform),
        compress="deflate",
    )
    if crs_wkt:
        profile["crs"] = crs_wkt
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(labels, 1)


def _footprint(crs_wkt: str, mod: Modality) -> dict[str, Any]:
    """Densified outline of the grid in EPSG:4326 as a GeoJSON Polygon (lon, lat), counter-clockwise."""
    xmin, ymin, xmax, ymax = grid_bounds(mod.transform, mod.width, mod.height)
    t = np.linspace(0.0, 1.0, FOOTPRINT_POINTS_PER_EDGE, endpoint=False)
    dx, dy = t * (xmax - xmin), t * (ymax - ymin)
    xs = np.concatenate([xmin + dx, np.full_like(t, xmax), xmax - dx, np.full_like(t, xmin)])
    ys = np.concatenate([np.full_like(t, ymin), ymin + dy, np.full_like(t, ymax), ymax - dy])
    lon, lat = Transformer.from_crs(crs_wkt, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def register_scene(spec: SceneSpec, store: Any, home: Path) -> Scene:
    """Validate ``spec``'s files and store the scene in ``store`` (a :class:`db.scenes.SceneStore`).

    Vector labels are rasterised onto the label grid into ``<home>/labels/<name>_<date>.tif`` (uint8, 0 =
    unlabelled) and that raster is registered. The footprint is the label grid's outline in EPSG:4326.

    Returns:
        The stored scene, with its database id.

    Raises:
        SceneExistsError: the name is taken. RasterReadError / RasterError: a file is missing, not a raster,
        truncated, or lacks a CRS/geotransform on a georeferenced scene. GridMismatchError: band files or
        modalities do not line up. LabelError: labels off the label grid or holding undeclared values.
        Nothing is stored (and no label raster is left behind) when anything raises.
    """
    _check_name_free(spec.name, store)
    classes = spec.class_infos()
    primary = spec.primary_modality
    infos: dict[str, list[list[RasterInfo]]] = {m: [] for m in spec.modality_names}
    for acq in spec.acquisitions:
        for mod, paths in acq.files.items():
            infos[mod].append([inspect_raster(_abs(p)) for p in paths])
    mods = {m: _modality(m, infos[m], spec.georeferenced) for m in spec.modality_names}
    grid_ref = infos[primary][0][0]
    crs_wkt = grid_ref.crs_wkt if spec.georeferenced else None
    if crs_wkt is not None:
        _check_one_crs(spec, infos, grid_ref, crs_wkt)
    _check_extents(mods, primary)

    vectors: dict[int, np.ndarray] = {}
    for i, acq in enumerate(spec.acquisitions):
        if acq.labels:
            _check_label_raster(inspect_raster(_abs(acq.labels)), grid_ref, primary, classes, spec.georeferenced)
        elif acq.label_vector:
            vectors[i] = rasterize_vector_labels(
                _abs(acq.label_vector), spec.label_field or "", classes, crs_wkt, grid_ref
            )

    written: list[Path] = []
    try:
        acquisitions = _acquisitions(spec, vectors, grid_ref, crs_wkt, Path(home), written)
        scene_files: dict[str, None] = dict.fromkeys(p for a in acquisitions for ps in a.files.values() for p in ps)
        scene_files.update(dict.fromkeys(a.labels for a in acquisitions if a.labels))
        fingerprints: tuple[FileFingerprint, ...] = tuple(file_fingerprint(p) for p in scene_files)
        scene = Scene(
            name=spec.name,
            georeferenced=spec.georeferenced,
            crs_wkt=crs_wkt,
            modalities=tuple(mods[m] for m in spec.modality_names),
            acquisitions=tuple(acquisitions),
            classes=classes,
            label_modality=primary,
            footprint_wgs84=_footprint(crs_wkt, mods[primary]) if crs_wkt else None,
            fingerprints=fingerprints,
            description=spec.description,
        )
        stored: Scene = store.add(scene)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    log.info(
        "registered scene %r (id %s): %d modalities, %d acquisitions, %d files",
        stored.name,
        stored.id,
        len(stored.modalities),
        len(stored.acquisitions),
        len(fingerprints),
    )
    return stored


def _check_name_free(name: str, store: Any) -> None:
    """Refuse a scene name that is taken."""
    try:
        store.get(name)
    except SceneNotFoundError:
        return
    raise SceneExistsError(
        f"a scene named {name!r} is already registered; choose another name or remove "
        f"it first with `python -m jobs scenes remove {name}`"
    )


def _check_one_crs(
    spec: SceneSpec, infos: dict[str, list[list[RasterInfo]]], grid_ref: RasterInfo, crs_wkt: str
) -> None:
    """Every modality in the label modality's CRS (within :data:`CRS_TOLERANCE_PX`)."""
    for m in spec.modality_names:
        other = infos[m][0][0]
        shift = crs_shift_px(crs_wkt, other.crs_wkt or "", grid_ref.transform, grid_ref.width, grid_ref.height)
        if shift > CRS_TOLERANCE_PX:
            raise GridMismatchError(
                f"modality {m!r} ({other.path!r}) is in CRS {crs_name(other.crs_wkt)} but the "
                f"label modality {spec.primary_modality!r} is in {crs_name(crs_wkt)}; reproject it "
                "(gdalwarp -t_srs) so all modalities share one CRS"
            )


def _acquisitions(
    spec: SceneSpec,
    vectors: dict[int, np.ndarray],
    grid_ref: RasterInfo,
    crs_wkt: str | None,
    home: Path,
    written: list[Path],
) -> list[Acquisition]:
    """The scene's acquisitions, with rasterised vector labels written to ``<home>/labels`` (added to
    ``written``, so a later failure removes them)."""
    acquisitions = []
    for i, acq in enumerate(spec.acquisitions):
        labels = _abs(acq.labels) if acq.labels else None
        if i in vectors:
            tag = re.sub(r"[^A-Za-z0-9_.-]", "_", acq.date or str(i))
            out = home / "labels" / f"{spec.name}_{tag}.tif"
            _write_labels(vectors[i], grid_ref, crs_wkt, out)
            written.append(out)
            labels = str(out.resolve())
        acquisitions.append(
            Acquisition(
                date=acq.date, files={m: tuple(_abs(p) for p in ps) for m, ps in acq.files.items()}, labels=labels
            )
        )
    return acquisitions


def verify_files(scene: Scene) -> None:
    """Check that every file of ``scene`` is as it was at registration (size + mtime, digest when mtime moved).

    Raises:
        SceneFileChangedError: naming every file that changed or vanished, and how.
    """
    problems = [(fp.path, why) for fp in scene.fingerprints if (why := fingerprint_change(fp))]
    if problems:
        listing = "; ".join(f"{p} ({why})" for p, why in problems)
        raise SceneFileChangedError(
            f"{len(problems)} file(s) of scene {scene.name!r} changed or vanished since registration: {listing}. "
            f"Restore them, or remove the scene and register it again"
        )
