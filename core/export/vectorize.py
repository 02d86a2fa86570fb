"""Class-map GeoTIFF -> polygons (GeoPackage in the map's CRS, GeoJSON in EPSG:4326), window by window.

Memory stays bounded by the window size, not the map size (plus a few bytes per region with a minimum mapping
unit):

1. *Minimum mapping unit* (:mod:`core.export.mmu`): a first read builds the graph of the map's 4-connected regions
   (class, pixel count, shared border lengths; regions cut by window borders joined) and merges every region below
   ``mmu`` pixels into the neighbour sharing its longest border, pass after pass, until no region below the MMU
   has a mapped neighbour. So no polygon is below the MMU, across window borders too; nodata 0 is never filled,
   so the mapped area is unchanged. (GDAL's one-pass sieve leaves small regions whose neighbours are all small.)
2. *Polygonise*: each window's merged classes are labelled into 4-connected regions per class
   (``scipy.ndimage.label``, the same connectivity as GDAL's polygonize), each region becomes one polygon in pixel
   coordinates with its pixel count and confidence sum (``np.bincount``). Regions not touching an inner window
   border are final and written at once; the others (cut by a border) are kept and, after each row of windows,
   merged per class (``shapely.union_all``, exact because pixel coordinates are integers) with their counts and
   sums added up; merged polygons that do not reach the next row are written and dropped. So what is held is one
   row of windows' cut polygons plus the polygons still open towards the next row, never the whole map.
3. *Simplify* (optional, ``tolerance`` in map units): ``shapely.coverage_simplify`` simplifies every shared
   boundary once, so neighbouring polygons keep sharing their edges (no gaps, no overlaps). It needs the whole
   coverage at once, so with simplification the polygons (the output, not the pixels) are held in memory; a
   simplified polygon's area can differ slightly from its pixels' (so from the MMU).

Attributes: ``class_id``, ``class_name``, ``area_ha`` (area of the written geometry; geodesic when the map's CRS
is geographic), ``mean_conf`` (mean confidence in percent of the polygon's pixels, ``None`` without a confidence
raster or where all its pixels are confidence nodata 255) and ``pixels`` (pixel count after merging).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes as rio_shapes
from rasterio.windows import Window

from core.data.vectors import GPKG_OPTIONS
from core.errors import GridMismatchError, RasterError
from core.export.classes import as_classes
from core.export.mmu import MmuPlan, label, plan_mmu, windows

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
CLASS_NODATA = 0
CONFIDENCE_NODATA = 255
GDAL_CACHE_MB = 64
"""GDAL block cache while vectorising: windows are read in order, so a small cache loses nothing."""


@dataclass(frozen=True)
class VectorizeResult:
    """What :func:`vectorize` wrote.

    Attributes:
        gpkg_path, geojson_path: the files written (``None`` where not asked for).
        polygons: number of features in each file.
        class_pixels: class id -> mapped pixels after merging (what the polygons cover).
        class_area_ha: class id -> mapped area after merging in hectares (pixels x pixel area).
        mmu_pixels: the minimum mapping unit used, in pixels (0 or 1: nothing merged).
        windows: number of windows processed.
        seconds: wall time.
        mmu_unmerged: regions below the minimum mapping unit kept as they are because no mapped pixel touches them
            (islands in nodata); every other polygon has at least ``mmu_pixels`` pixels.
        mmu_passes: merging passes run (0 without a minimum mapping unit).
    """

    gpkg_path: Path | None
    geojson_path: Path | None
    polygons: int
    class_pixels: dict[int, int]
    class_area_ha: dict[int, float]
    mmu_pixels: int
    windows: int
    seconds: float
    mmu_unmerged: int = 0
    mmu_passes: int = 0


@dataclass
class _Piece:
    class_id: int
    geom: Any  # shapely Polygon in global pixel coordinates (col, row)
    pixels: int
    conf_sum: float
    conf_n: int


@dataclass
class _State:
    class_pixels: dict[int, int] = field(default_factory=dict)
    border: list[_Piece] = field(default_factory=list)


def mmu_in_pixels(min_mapping_unit: float, unit: str, transform: Affine, crs: Any | None) -> int:
    """Minimum mapping unit in pixels: ``unit`` ``"px"`` as given, ``"ha"`` divided by the pixel area (rounded up).

    Raises:
        RasterError: hectares asked for on a map without a projected CRS in metres.
    """
    if unit == "px":
        return max(0, math.ceil(min_mapping_unit))
    if unit != "ha":
        raise RasterError(f"minimum mapping unit unit {unit!r} is unknown; use 'px' or 'ha'")
    if crs is None or not crs.is_projected:
        raise RasterError(
            f"a minimum mapping unit in hectares needs a projected CRS (map CRS: {crs}); give it in "
            "pixels (unit='px') instead"
        )
    factor = crs.linear_units_factor[1]
    pixel_m2 = abs(transform.a * transform.e) * factor * factor
    return max(0, math.ceil(min_mapping_unit * 1e4 / pixel_m2))


def _border_labels(labels: np.ndarray, core: Window, height: int, width: int) -> set[int]:
    """Labels touching a window edge that has another window behind it."""
    edges = []
    if core.row_off > 0:
        edges.append(labels[0])
    if core.row_off + core.height < height:
        edges.append(labels[-1])
    if core.col_off > 0:
        edges.append(labels[:, 0])
    if core.col_off + core.width < width:
        edges.append(labels[:, -1])
    return set(np.unique(np.concatenate(edges)).tolist()) - {0} if edges else set()


def _window_pieces(
    classes: np.ndarray, conf: np.ndarray | None, core: Window, height: int, width: int
) -> tuple[list[_Piece], list[_Piece]]:
    """Polygonise one merged core: (final pieces, pieces cut by an inner window border), pixel coordinates."""
    labels, class_of = label(classes)
    n = len(class_of)
    pixels = np.bincount(labels.ravel(), minlength=n)
    conf_sum: np.ndarray
    conf_n: np.ndarray
    if conf is not None:
        ok = (conf != CONFIDENCE_NODATA).ravel()
        conf_sum = np.bincount(labels.ravel(), weights=np.where(ok, conf.ravel(), 0).astype(np.float64), minlength=n)
        conf_n = np.bincount(labels.ravel(), weights=ok.astype(np.float64), minlength=n)
    else:
        conf_sum = conf_n = np.zeros(n)
    border = _border_labels(labels, core, height, width)
    to_px = Affine(1, 0, core.col_off, 0, 1, core.row_off)
    final: list[_Piece] = []
    cut: list[_Piece] = []
    for geom, value in rio_shapes(labels, mask=labels > 0, connectivity=4, transform=to_px):
        i = int(value)
        piece = _Piece(
            int(class_of[i]), shapely.geometry.shape(geom), int(pixels[i]), float(conf_sum[i]), int(conf_n[i])
        )
        (cut if i in border else final).append(piece)
    return final, cut


def _process_window(
    src: Any, conf: Any | None, core: Window, index: int, plan: MmuPlan | None, state: _State
) -> tuple[list[_Piece], list[_Piece]]:
    """Merge (``plan``: the minimum mapping unit) and polygonise window number ``index``; adds its mapped pixels
    per class to ``state``."""
    cls = src.read(1, window=core)
    if plan is not None:
        cls = plan.apply(index, cls)
    for k, n in zip(*np.unique(cls[cls != CLASS_NODATA], return_counts=True)):
        state.class_pixels[int(k)] = state.class_pixels.get(int(k), 0) + int(n)
    cw = conf.read(1, window=core) if conf is not None else None
    return _window_pieces(cls, cw, core, src.height, src.width)


def _merge_row(pieces: list[_Piece], row_end: int, height: int) -> tuple[list[_Piece], list[_Piece]]:
    """Merge the border pieces after a window row: (polygons now complete, pieces still open at ``row_end``).

    A merged polygon is complete unless it reaches the bottom edge of the row (pixel y == ``row_end``) and more
    rows follow, so at most one window row of cut polygons (plus those spanning rows) is held at a time.
    """
    merged = _merge(pieces)
    if row_end >= height:
        return merged, []
    done = [p for p in merged if p.geom.bounds[3] < row_end]
    return done, [p for p in merged if p.geom.bounds[3] >= row_end]


def _merge(pieces: list[_Piece]) -> list[_Piece]:
    """Union the border-cut pieces per class; counts and sums of the parts of each merged polygon are added."""
    merged: list[_Piece] = []
    for k in sorted({p.class_id for p in pieces}):
        group = [p for p in pieces if p.class_id == k]
        union = shapely.union_all([p.geom for p in group])
        parts = list(getattr(union, "geoms", [union]))
        tree = shapely.STRtree(parts)
        points = [p.geom.representative_point() for p in group]
        owner = {int(i): int(j) for i, j in zip(*tree.query(points, predicate="within"))}
        acc = [_Piece(k, part, 0, 0.0, 0) for part in parts]
        for i, p in enumerate(group):
            a = acc[owner[i]]
            a.pixels, a.conf_sum, a.conf_n = a.pixels + p.pixels, a.conf_sum + p.conf_sum, a.conf_n + p.conf_n
        merged.extend(acc)
    return merged


class _Sinks:
    """The GeoPackage (map CRS) and GeoJSON (EPSG:4326) being written; features go to both."""

    SCHEMA: ClassVar[dict[str, Any]] = {
        "geometry": "Polygon",
        "properties": {
            "class_id": "int",
            "class_name": "str",
            "area_ha": "float",
            "mean_conf": "float",
            "pixels": "int",
        },
    }

    def __init__(
        self, gpkg: Path | None, geojson: Path | None, crs: Any | None, transform: Affine, names: dict[int, str]
    ) -> None:
        import fiona
        from pyproj import Geod, Transformer

        self.names, self.count = names, 0
        self.coeffs = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
        self.geod = Geod(ellps="WGS84") if crs is not None and crs.is_geographic else None
        self.unit2 = (crs.linear_units_factor[1] ** 2) if crs is not None and crs.is_projected else 1.0
        self.to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True) if geojson is not None else None
        self.files = []
        for path, driver, out_crs in ((gpkg, "GPKG", crs.to_wkt() if crs else None), (geojson, "GeoJSON", "EPSG:4326")):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                options = GPKG_OPTIONS if driver == "GPKG" else {}
                self.files.append(
                    (
                        fiona.open(path, "w", driver=driver, schema=self.SCHEMA, crs=out_crs, **options),
                        driver == "GeoJSON",
                    )
                )

    def to_map(self, geom_px: Any) -> Any:
        return shapely.affinity.affine_transform(geom_px, self.coeffs)

    def area_ha(self, geom: Any) -> float:
        if self.geod is not None:
            return abs(self.geod.geometry_area_perimeter(geom)[0]) / 1e4
        return float(geom.area) * self.unit2 / 1e4

    def _wgs84(self, geom: Any) -> Any:
        def fn(xy: np.ndarray) -> np.ndarray:
            lon, lat = self.to_wgs84.transform(xy[:, 0], xy[:, 1])  # type: ignore[union-attr]
            return np.column_stack([lon, lat])

        return shapely.transform(geom, fn)

    def write(self, pieces: Sequence[_Piece], geoms: Sequence[Any], chunk: int = 256) -> None:
        """Write ``pieces`` with their map-coordinate geometries ``geoms`` (same order), ``chunk`` at a time."""
        for i in range(0, len(pieces), chunk):
            self._write(pieces[i : i + chunk], geoms[i : i + chunk])

    def _write(self, pieces: Sequence[_Piece], geoms: Sequence[Any]) -> None:
        import fiona

        batches: list[list[Any]] = [[] for _ in self.files]
        for p, g in zip(pieces, geoms, strict=True):
            if g.is_empty:
                continue
            props = {
                "class_id": p.class_id,
                "class_name": self.names.get(p.class_id, str(p.class_id)),
                "area_ha": self.area_ha(g),
                "mean_conf": (p.conf_sum / p.conf_n) if p.conf_n else None,
                "pixels": p.pixels,
            }
            for batch, (_, wgs) in zip(batches, self.files):
                out = self._wgs84(g) if wgs else g
                batch.append(
                    fiona.Feature(
                        geometry=fiona.Geometry.from_dict(shapely.geometry.mapping(out)),
                        properties=fiona.Properties(**props),
                    )
                )
            self.count += 1
        for batch, (sink, _) in zip(batches, self.files):
            sink.writerecords(batch)

    def close(self) -> None:
        for sink, _ in self.files:
            sink.close()


def _open_confidence(path: str | Path | None, src: Any) -> Any | None:
    if path is None:
        return None
    conf = rasterio.open(path)
    if (conf.width, conf.height) != (src.width, src.height) or conf.transform != src.transform:
        conf.close()
        raise GridMismatchError(
            f"confidence raster {path} is {conf.width}x{conf.height} px with transform "
            f"{tuple(conf.transform)[:6]} but the class map is {src.width}x{src.height} px with "
            f"{tuple(src.transform)[:6]}; pass the confidence COG written with this class map"
        )
    return conf


def _check_inputs(src: Any, out_gpkg: Path | None, out_geojson: Path | None, window: int) -> None:
    if out_gpkg is None and out_geojson is None:
        raise RasterError("vectorize was given neither out_gpkg nor out_geojson; name at least one output file")
    if src.count != 1 or src.dtypes[0] != "uint8":
        raise RasterError(
            f"{src.name} has {src.count} band(s) of {src.dtypes[0]}; a class map is one uint8 band of "
            "class ids (nodata 0) as written by the predict job"
        )
    if out_geojson is not None and src.crs is None:
        raise RasterError(
            f"{src.name} has no CRS, so it cannot be written as GeoJSON in EPSG:4326; write only the "
            "GeoPackage, or assign a CRS (gdal_edit.py -a_srs EPSG:xxxx)"
        )
    if window < 64:
        raise RasterError(f"window {window} px is too small; use at least 64 (1024 is a good default)")


def _polygonize(
    src: Any,
    conf: Any,
    window: int,
    plan: MmuPlan | None,
    simplify: float,
    state: _State,
    sinks: _Sinks,
    progress: Progress | None,
) -> list[Any]:
    """Polygonise window by window, merging the pieces cut by window borders after each row; returns the windows.

    Without simplification each window's finished polygons are written at once (bounded memory); with it they are
    held until the end, as the coverage is simplified as a whole (topology kept between neighbours).
    """
    held: list[Any] = []
    wins = list(windows(src.height, src.width, window))
    for i, core in enumerate(wins):
        final, cut = _process_window(src, conf, core, i, plan, state)
        state.border.extend(cut)
        if core.col_off + core.width == src.width:  # end of a window row: merge what it completed
            done, state.border = _merge_row(state.border, core.row_off + core.height, src.height)
            final += done
        if simplify > 0:
            held.extend(final)
        else:
            sinks.write(final, [sinks.to_map(p.geom) for p in final])
        if progress:
            progress("polygonize", i + 1, len(wins))
    if simplify > 0 and held:
        sinks.write(held, list(shapely.coverage_simplify([sinks.to_map(p.geom) for p in held], simplify)))
    if progress:
        progress("write", 1, 1)
    return wins


def vectorize(
    class_map: str | Path,
    out_gpkg: str | Path | None = None,
    out_geojson: str | Path | None = None,
    confidence: str | Path | None = None,
    min_mapping_unit: float = 0,
    mmu_unit: str = "px",
    simplify: float = 0.0,
    classes: Sequence[Any] | None = None,
    window: int = 1024,
    progress: Progress | None = None,
) -> VectorizeResult:
    """Turn a class-map GeoTIFF into polygons (see the module docstring for how memory stays bounded).

    Args:
        class_map: uint8 class ids, nodata 0 (the predict job's COG).
        out_gpkg: GeoPackage to write, in the class map's CRS (layer named after the file).
        out_geojson: GeoJSON to write, in EPSG:4326 (lon, lat), RFC 7946.
        confidence: the matching confidence COG (uint8 percent, nodata 255) for ``mean_conf``, or None.
        min_mapping_unit: smallest polygon: smaller regions are merged into neighbours (the one sharing the longest
            border) until none is left (see :mod:`core.export.mmu`).
        mmu_unit: ``"px"`` (pixels) or ``"ha"`` (hectares; needs a projected CRS).
        simplify: simplification tolerance in map units (0: none), topology kept between neighbours.
        classes: ``[{"id", "name", "color"}]``; None reads the class map's ``CLASSES`` tag.
        window: side of the processing window in pixels (memory ~ window^2 x 40 bytes, plus ~ 50 bytes per region
            of the map with a minimum mapping unit).
        progress: optional ``callable(phase, done, total)``; phases ``"regions"`` (with a minimum mapping unit),
            ``"polygonize"`` and ``"write"``.

    Returns:
        A :class:`VectorizeResult`.

    Raises:
        RasterError: not a one-band uint8 map, no output named, GeoJSON asked of a map without CRS.
        GridMismatchError: the confidence raster is not on the class map's grid.
    """
    t0 = time.perf_counter()
    gpkg, geojson = (Path(p) if p is not None else None for p in (out_gpkg, out_geojson))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(class_map) as src:
        _check_inputs(src, gpkg, geojson, window)
        if classes is None:
            from core.data.cog import read_classes

            classes = read_classes(class_map)
        names = {c.id: c.name for c in as_classes(classes)}
        mmu = mmu_in_pixels(min_mapping_unit, mmu_unit, src.transform, src.crs)
        conf = _open_confidence(confidence, src)
        sinks = _Sinks(gpkg, geojson, src.crs, src.transform, names)
        state = _State()
        try:
            plan = plan_mmu(src, window, mmu, progress) if mmu >= 2 else None
            wins = _polygonize(src, conf, window, plan, simplify, state, sinks, progress)
            pixel_m2 = abs(src.transform.a * src.transform.e) * sinks.unit2
        finally:
            sinks.close()
            if conf is not None:
                conf.close()
    result = VectorizeResult(
        gpkg,
        geojson,
        sinks.count,
        dict(sorted(state.class_pixels.items())),
        {k: v * pixel_m2 / 1e4 for k, v in sorted(state.class_pixels.items())},
        mmu,
        len(wins),
        time.perf_counter() - t0,
        plan.unmerged if plan is not None else 0,
        plan.passes if plan is not None else 0,
    )
    _log_result(class_map, result, simplify)
    return result


def _log_result(class_map: str | Path, result: VectorizeResult, simplify: float) -> None:
    log.info(
        "vectorized %s: %d polygons from %d windows (mmu %d px, %d merging passes, %d islands in nodata below it "
        "kept; simplify %s) in %.1f s",
        class_map,
        result.polygons,
        result.windows,
        result.mmu_pixels,
        result.mmu_passes,
        result.mmu_unmerged,
        simplify,
        result.seconds,
    )
