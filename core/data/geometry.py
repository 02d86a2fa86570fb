"""Areas of interest: parse, validate, reproject to the scene and clip to its footprint.

The result, :class:`ResolvedAOI`, holds the AOI in ``(col, row)`` pixel coordinates of the scene's label grid (the
primary modality), ready for :mod:`core.geo.windows`. Coordinates given with ``crs="pixel"`` are already ``(col, row)``
of that grid (the only choice for scenes that are not georeferenced). Other CRSs are reprojected to the scene CRS
with densified edges (each edge cut into >= 64 segments first) so that straight lines in one CRS follow their true
curve in the other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely import affinity
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from core.configs import AOIConfig
from core.data.scene import Scene
from core.errors import AOIError, AOIOutsideSceneError
from core.geo.windows import PixelWindow

log = logging.getLogger(__name__)

PIXEL = "pixel"
_DENSIFY_SEGMENTS = 64


@dataclass(frozen=True)
class ResolvedAOI:
    """An AOI on the label grid.

    Attributes:
        geometry: polygon(s) in ``(col, row)`` pixel coordinates of the label grid, clipped to the raster;
            ``None`` means the whole scene.
        bbox: the smallest pixel window holding ``geometry`` (the whole raster when ``geometry`` is None).
        warnings: messages for the user (e.g. "AOI clipped: 30% lies outside the scene"), also logged.
    """

    geometry: BaseGeometry | None
    bbox: PixelWindow
    warnings: tuple[str, ...] = ()

    @property
    def whole_scene(self) -> bool:
        return self.geometry is None


def parse_geometry(geojson: dict[str, Any]) -> BaseGeometry:
    """A shapely (Multi)Polygon from a GeoJSON geometry, Feature or FeatureCollection of exactly one feature.

    Raises:
        AOIError: not GeoJSON, not a polygon, empty, or invalid (e.g. self-intersecting), naming what is wrong.
    """
    if not isinstance(geojson, dict) or "type" not in geojson:
        raise AOIError(
            f"AOI {str(geojson)[:120]!r} is not a GeoJSON object (no 'type'); give a Polygon or "
            "MultiPolygon geometry, a Feature, or a FeatureCollection with one feature"
        )
    kind = geojson["type"]
    if kind == "FeatureCollection":
        features = geojson.get("features") or []
        if len(features) != 1:
            raise AOIError(
                f"AOI FeatureCollection has {len(features)} features; expected exactly 1 "
                "(merge them into one MultiPolygon or draw a single shape)"
            )
        return parse_geometry(features[0])
    if kind == "Feature":
        if not geojson.get("geometry"):
            raise AOIError("AOI Feature has no geometry; draw a polygon or rectangle")
        return parse_geometry(geojson["geometry"])
    if kind not in ("Polygon", "MultiPolygon"):
        raise AOIError(f"AOI geometry type {kind!r} is not supported; expected Polygon or MultiPolygon")
    try:
        geom = shape(geojson)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise AOIError(
            f"AOI {kind} has malformed coordinates ({exc}); expected "
            "[[[x, y], [x, y], ...]] rings of at least 4 positions, first = last"
        ) from exc
    if geom.is_empty or shapely.make_valid(geom).area == 0:  # a bow-tie has zero signed area but is not empty
        raise AOIError(f"AOI {kind} is empty (zero area); draw a polygon with at least 3 distinct corners")
    if not geom.is_valid:
        raise AOIError(
            f"AOI {kind} is invalid: {explain_validity(geom)}; redraw it without crossing edges "
            "(a self-intersecting 'bow-tie' has no well-defined inside)"
        )
    return geom


def densify(geom: BaseGeometry, segments: int = _DENSIFY_SEGMENTS) -> BaseGeometry:
    """``geom`` with extra vertices so no edge is longer than 1/``segments`` of its bbox's larger side."""
    minx, miny, maxx, maxy = geom.bounds
    step = max(maxx - minx, maxy - miny) / segments
    return shapely.segmentize(geom, step) if step > 0 else geom


def reproject(geom: BaseGeometry, src_crs: str, dst_crs: str) -> BaseGeometry:
    """``geom`` from ``src_crs`` to ``dst_crs`` (any pyproj-readable CRS: EPSG code, WKT), edges densified first."""
    transformer = Transformer.from_crs(CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs), always_xy=True)
    out = shapely.transform(densify(geom), lambda xy: _stack(*transformer.transform(xy[:, 0], xy[:, 1])))
    if not out.is_valid:
        out = shapely.make_valid(out)
    return out


def _stack(x: Any, y: Any) -> Any:
    import numpy as np

    return np.column_stack([x, y])


def scene_footprint(scene: Scene) -> BaseGeometry:
    """The label grid's outline in the scene CRS (pixel coordinates when the scene is not georeferenced)."""
    m = scene.primary
    t = Affine(*m.transform)
    corners = [t @ (0, 0), t @ (m.width, 0), t @ (m.width, m.height), t @ (0, m.height)]
    return shapely.Polygon(corners)


def _to_pixels(geom: BaseGeometry, transform: tuple[float, ...]) -> BaseGeometry:
    inv = ~Affine(*transform)
    return affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])


def _fmt_bounds(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def resolve_aoi(config: AOIConfig, scene: Scene) -> ResolvedAOI:
    """Parse, validate, reproject and clip an AOI to ``scene``'s label grid.

    Args:
        config: GeoJSON geometry in ``config.crs`` (``"pixel"`` = (col, row) of the label grid); None = whole scene.
        scene: the scene; its label grid (``scene.primary``) defines the pixel coordinates of the result.

    Returns:
        The AOI in label-grid pixel coordinates with its pixel bbox. An AOI partly outside the scene is clipped:
        the warning is logged and returned in ``warnings``. An AOI smaller than a tile is fine (one window).

    Raises:
        AOIError: malformed, empty or self-intersecting geometry; unknown CRS; a map CRS on a scene that is
            not georeferenced.
        AOIOutsideSceneError: the AOI does not overlap the scene; the message gives both extents in the AOI's CRS.
    """
    m = scene.primary
    full = PixelWindow(0, 0, m.height, m.width)
    if config.geometry is None:
        return ResolvedAOI(None, full)
    geom = parse_geometry(config.geometry)
    crs = config.crs
    if crs.lower() == PIXEL:
        px = geom
        footprint_in_aoi_crs = full.to_box()
    else:
        if not scene.georeferenced or not scene.crs_wkt:
            raise AOIError(
                f"scene {scene.name!r} is not georeferenced, so an AOI in {crs!r} cannot be placed on it; "
                "give the AOI with crs='pixel' in (col, row) pixel coordinates of the label grid"
            )
        try:
            CRS.from_user_input(crs)
        except CRSError as exc:
            raise AOIError(f"AOI crs {crs!r} is not a known CRS ({exc}); use e.g. 'EPSG:4326' or 'pixel'") from exc
        px = _to_pixels(reproject(geom, crs, scene.crs_wkt), m.transform)
        footprint_in_aoi_crs = reproject(scene_footprint(scene), scene.crs_wkt, crs)
    raster = full.to_box()
    clipped = px.intersection(raster)
    if clipped.is_empty or clipped.area == 0:
        raise AOIOutsideSceneError(
            f"AOI with bounds {_fmt_bounds(geom.bounds)} does not overlap scene {scene.name!r}, whose extent is "
            f"{_fmt_bounds(footprint_in_aoi_crs.bounds)} (minx, miny, maxx, maxy in {crs}); draw the AOI inside "
            "the scene footprint or check the AOI's crs"
        )
    warnings: list[str] = []
    outside = 1.0 - clipped.area / px.area
    if outside > 1e-9:
        msg = (
            f"AOI clipped to scene {scene.name!r}: {outside:.1%} of it lies outside the scene extent "
            f"{_fmt_bounds(footprint_in_aoi_crs.bounds)} ({crs}); only the part inside is used"
        )
        log.warning(msg)
        warnings.append(msg)
    minx, miny, maxx, maxy = clipped.bounds
    eps = 1e-6  # reprojection round-off must not add a pixel row / column
    c0, r0 = max(0, math.floor(minx + eps)), max(0, math.floor(miny + eps))
    c1, r1 = min(m.width, math.ceil(maxx - eps)), min(m.height, math.ceil(maxy - eps))
    bbox = PixelWindow(r0, c0, max(1, r1 - r0), max(1, c1 - c0))
    return ResolvedAOI(clipped, bbox, tuple(warnings))
