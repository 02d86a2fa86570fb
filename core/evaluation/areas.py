"""Mapped area per class of a class map: pixels, m², hectares, km² and percent of the mapped area.

Areas come from the pixel size in the map's CRS (projected CRSs: ``|a*e - b*d|`` times the square of the CRS's
linear unit in metres, i.e. areas on the projection plane), from geodesic cell areas on the CRS's ellipsoid for
geographic CRSs (one cell polygon per pixel row: cells of a row have the same area), and are pixel counts only for
maps that are not georeferenced. The map is read block by block, so memory does not grow with its size.

Nodata (0) is never counted; values that are not declared classes are counted in ``undeclared_pixels`` and left
out of the percentages.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pyproj import CRS as ProjCRS

from core.data.rasters import open_raster
from core.errors import RasterError
from core.evaluation.blocks import iter_blocks
from core.evaluation.map_identity import MapIdentity, read_map_identity

log = logging.getLogger(__name__)

AreaMethod = Literal["planar", "geodesic", "pixels"]
_EDGE_POINTS = 16  # points per parallel edge of a geodesic cell polygon (edges along parallels are not geodesics)


@dataclass(frozen=True)
class ClassArea:
    """Mapped area of one class.

    Attributes:
        class_id, name: the class.
        pixels: mapped pixels of the class.
        area_m2, hectares, km2: mapped area (``None`` for a map that is not georeferenced).
        percent: share of the mapped (declared-class) area, 0-100.
    """

    class_id: int
    name: str
    pixels: int
    area_m2: float | None
    hectares: float | None
    km2: float | None
    percent: float


@dataclass(frozen=True)
class MappedAreas:
    """Per-class mapped areas of one map (see module docstring).

    Attributes:
        map_path: the map.
        method: ``"planar"`` (projected CRS), ``"geodesic"`` (geographic CRS) or ``"pixels"`` (no CRS).
        pixel_area_m2: area of one pixel for ``"planar"``; ``None`` otherwise (geodesic cell areas vary by row).
        classes: one entry per declared class, in class-id order (classes absent from the map have 0 pixels).
        undeclared_pixels: non-nodata pixels whose value is not a declared class.
    """

    map_path: str
    method: AreaMethod
    pixel_area_m2: float | None
    classes: tuple[ClassArea, ...]
    undeclared_pixels: int = 0

    @property
    def total_pixels(self) -> int:
        """Mapped pixels of declared classes."""
        return sum(c.pixels for c in self.classes)

    @property
    def total_area_m2(self) -> float | None:
        """Mapped area of declared classes in m² (``None`` when not georeferenced)."""
        return None if self.method == "pixels" else float(sum(c.area_m2 or 0.0 for c in self.classes))

    def stratum_sizes(self) -> dict[int, float]:
        """Stratum size per class id for the estimator: area in m², or pixels when not georeferenced."""
        if self.method == "pixels":
            return {c.class_id: float(c.pixels) for c in self.classes}
        return {c.class_id: float(c.area_m2 or 0.0) for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {
            "map_path": self.map_path,
            "method": self.method,
            "pixel_area_m2": self.pixel_area_m2,
            "undeclared_pixels": self.undeclared_pixels,
            "total_pixels": self.total_pixels,
            "total_area_m2": self.total_area_m2,
            "classes": [vars(c).copy() for c in self.classes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MappedAreas:
        """Inverse of :meth:`to_dict`."""
        return cls(
            map_path=d["map_path"],
            method=d["method"],
            pixel_area_m2=d.get("pixel_area_m2"),
            classes=tuple(ClassArea(**c) for c in d["classes"]),
            undeclared_pixels=int(d.get("undeclared_pixels", 0)),
        )


def planar_pixel_area_m2(transform: tuple[float, ...], crs_wkt: str) -> float:
    """Area of one pixel in m² on the plane of the projected CRS ``crs_wkt``.

    Args:
        transform: affine ``(a, b, c, d, e, f)`` in CRS units.
        crs_wkt: a projected CRS.
    """
    a, b, _c, d, e, _f = transform
    unit = ProjCRS.from_wkt(crs_wkt).axis_info[0].unit_conversion_factor  # metres per CRS unit
    return abs(a * e - b * d) * unit * unit


def geodesic_row_areas_m2(transform: tuple[float, ...], height: int, crs_wkt: str) -> np.ndarray:
    """Geodesic area in m² of one cell of each pixel row of a north-up grid in a geographic CRS.

    Each cell is a polygon on the CRS's ellipsoid, its edges along parallels densified so the area is that of the
    quadrangle bounded by meridians and parallels (as a cell is), not of a geodesic polygon.

    Args:
        transform: affine ``(a, 0, c, 0, e, f)`` in degrees (longitude, latitude).
        height: number of pixel rows.
        crs_wkt: a geographic CRS.

    Returns:
        ``(height,)`` float64 cell area per row.

    Raises:
        RasterError: the grid is rotated (cells of a row would differ).
    """
    a, b, c, d, e, f = transform
    if b != 0 or d != 0:
        raise RasterError(
            f"the geographic grid is rotated (transform {tuple(transform)}); geodesic cell areas are "
            "computed for north-up grids only; warp the map to a north-up grid (gdalwarp)"
        )
    geod = ProjCRS.from_wkt(crs_wkt).get_geod()
    if geod is None:
        raise RasterError(f"the CRS {ProjCRS.from_wkt(crs_wkt).name!r} has no ellipsoid; geodesic areas need one")
    lons = c + abs(a) * np.linspace(0.0, 1.0, _EDGE_POINTS)
    out = np.empty(height, dtype=np.float64)
    for r in range(height):
        top, bottom = f + e * r, f + e * (r + 1)
        ring_lon = np.concatenate([lons, lons[::-1]])
        ring_lat = np.concatenate([np.full(_EDGE_POINTS, top), np.full(_EDGE_POINTS, bottom)])
        area, _ = geod.polygon_area_perimeter(ring_lon, ring_lat)
        out[r] = abs(area)
    return out


def _accumulate(map_path: str | Path, row_areas: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and (when ``row_areas`` is given) summed cell area per value 0..255, block by block."""
    counts = np.zeros(256, dtype=np.int64)
    areas = np.zeros(256, dtype=np.float64)
    with open_raster(map_path) as src:
        for win, block in iter_blocks(src):
            counts += np.bincount(block.ravel(), minlength=256)
            if row_areas is not None:
                rows = np.arange(win.row_off, win.row_off + win.height)
                w = np.broadcast_to(row_areas[rows][:, None], block.shape)
                areas += np.bincount(block.ravel(), weights=w.ravel(), minlength=256)
    return counts, areas


def mapped_areas(map_path: str | Path, class_ids: tuple[int, ...] | None = None) -> MappedAreas:
    """Mapped area per class of a uint8 class map (nodata 0), see the module docstring.

    Args:
        map_path: a class map with a ``CLASSES`` tag (see ``core.data.cog``).
        class_ids: classes to report; default the map's declared classes.

    Returns:
        :class:`MappedAreas` (units: pixels, m², ha, km², percent of the mapped declared-class area).
    """
    ident = read_map_identity(map_path)
    ids = tuple(int(c) for c in (class_ids if class_ids is not None else ident.class_ids))
    method, pixel_area, row_areas = _area_method(ident)
    counts, summed = _accumulate(ident.path, row_areas)
    undeclared = int(counts[1:].sum() - counts[list(ids)].sum()) if ids else int(counts[1:].sum())
    if undeclared:
        log.warning(
            "%s: %d pixels have values that are not declared classes; left out of the areas", ident.path, undeclared
        )
    total = int(counts[list(ids)].sum()) if ids else 0
    denom = _classes_total(method, counts, summed, ids, pixel_area)
    classes = []
    for cid in ids:
        px = int(counts[cid])
        m2 = None if method == "pixels" else float(px * (pixel_area or 0.0) if method == "planar" else summed[cid])
        classes.append(
            ClassArea(
                class_id=cid,
                name=ident.name_of(cid),
                pixels=px,
                area_m2=m2,
                hectares=None if m2 is None else m2 / 1e4,
                km2=None if m2 is None else m2 / 1e6,
                percent=_percent(m2 if m2 is not None else px, denom),
            )
        )
    log.info("mapped areas of %s (%s): %d pixels in %d classes", ident.path, method, total, len(ids))
    return MappedAreas(
        map_path=ident.path,
        method=method,
        pixel_area_m2=pixel_area,
        classes=tuple(classes),
        undeclared_pixels=undeclared,
    )


def _classes_total(
    method: AreaMethod, counts: np.ndarray, summed: np.ndarray, ids: tuple[int, ...], pixel_area: float | None
) -> float:
    """Total of the declared classes in the unit of ``method`` (pixels, or m²)."""
    if not ids:
        return 0.0
    if method == "pixels":
        return float(counts[list(ids)].sum())
    if method == "planar":
        return float(counts[list(ids)].sum()) * float(pixel_area or 0.0)
    return float(summed[list(ids)].sum())


def _percent(part: float, total: float) -> float:
    return 100.0 * part / total if total > 0 else 0.0


def _area_method(ident: MapIdentity) -> tuple[AreaMethod, float | None, np.ndarray | None]:
    if ident.crs_wkt is None:
        return "pixels", None, None
    crs = ProjCRS.from_wkt(ident.crs_wkt)
    if crs.is_geographic:
        return "geodesic", None, geodesic_row_areas_m2(ident.transform, ident.height, ident.crs_wkt)
    return "planar", planar_pixel_area_m2(ident.transform, ident.crs_wkt), None


AREA_COLUMNS = ("class_id", "class_name", "pixels", "area_m2", "hectares", "km2", "percent")


def write_areas_csv(areas: MappedAreas, path: str | Path) -> Path:
    """Write the per-class table (``AREA_COLUMNS``, a final ``total`` row) as CSV; empty cells when not georeferenced."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(AREA_COLUMNS)
        for c in areas.classes:
            w.writerow(
                [c.class_id, c.name, c.pixels, _fmt(c.area_m2), _fmt(c.hectares), _fmt(c.km2), f"{c.percent:.4f}"]
            )
        tot = areas.total_area_m2
        w.writerow(
            [
                "",
                "total",
                areas.total_pixels,
                _fmt(tot),
                _fmt(None if tot is None else tot / 1e4),
                _fmt(None if tot is None else tot / 1e6),
                "100.0000" if areas.total_pixels else "0.0000",
            ]
        )
    return p


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"
