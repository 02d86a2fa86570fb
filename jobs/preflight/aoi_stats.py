"""Raster statistics of an AOI on a scene: its ground area, its label-grid pixels and its labelled pixels per class.

Only the label rasters are read, in the AOI's window: a pre-flight of a large scene reads no imagery.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod
from rasterio.features import geometry_mask
from shapely import affinity

from core.configs import AOIConfig
from core.data.geometry import parse_geometry, resolve_aoi
from core.data.scene import Scene


@dataclass(frozen=True)
class AOIStats:
    """An AOI measured on a scene's label grid.

    Attributes:
        area_km2: ground area of the AOI clipped to the scene, km² (None for scenes that are not georeferenced).
        pixels: label-grid pixels whose centre lies in the AOI.
        bbox_shape: (rows, cols) of the AOI's bounding window on the label grid.
        labelled: labelled pixels in the AOI summed over all dated label rasters.
        per_class: class id -> labelled pixels (all dates).
        warnings: messages from resolving the AOI (e.g. it was clipped to the scene).
    """

    area_km2: float | None
    pixels: int
    bbox_shape: tuple[int, int]
    labelled: int
    per_class: dict[int, int]
    warnings: tuple[str, ...] = ()
    whole_scene: bool = False


def _pixel_area_km2(scene: Scene) -> float | None:
    if not scene.georeferenced or not scene.crs_wkt:
        return None
    crs = CRS.from_wkt(scene.crs_wkt)
    if not crs.is_projected:
        return None
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    t = scene.primary.transform
    return abs(t[0] * t[4] - t[1] * t[3]) * factor * factor / 1e6


def aoi_stats(scene: Scene, aoi: AOIConfig) -> AOIStats:
    """Measure ``aoi`` on ``scene`` (see :class:`AOIStats`). Label rasters are read in the AOI's window only.

    Raises:
        AOIError / AOIOutsideSceneError: from :func:`core.data.geometry.resolve_aoi`, message unchanged.
    """
    resolved = resolve_aoi(aoi, scene)
    win = resolved.bbox
    if resolved.geometry is None:
        mask = np.ones(win.shape, dtype=bool)
    else:
        local = affinity.translate(resolved.geometry, -win.col_off, -win.row_off)
        mask = geometry_mask([local], out_shape=win.shape, transform=Affine.identity(), invert=True)
    pixels = int(mask.sum())
    px_km2 = _pixel_area_km2(scene)
    if px_km2 is not None:
        area = (resolved.geometry.area if resolved.geometry is not None else win.height * win.width) * px_km2
    elif scene.georeferenced and aoi.geometry is not None and aoi.crs.upper() == "EPSG:4326":
        area = abs(Geod(ellps="WGS84").geometry_area_perimeter(parse_geometry(aoi.geometry))[0]) / 1e6
    else:
        area = None
    per_class: dict[int, int] = {}
    for acq in scene.acquisitions:
        if not acq.labels:
            continue
        with rasterio.open(acq.labels) as src:
            labels = src.read(1, window=win.to_rasterio())
        ids, counts = np.unique(labels[mask & (labels > 0)], return_counts=True)
        for cid, n in zip(ids.tolist(), counts.tolist(), strict=True):
            per_class[int(cid)] = per_class.get(int(cid), 0) + int(n)
    return AOIStats(
        area_km2=area,
        pixels=pixels,
        bbox_shape=win.shape,
        labelled=sum(per_class.values()),
        per_class=per_class,
        warnings=resolved.warnings,
        whole_scene=resolved.whole_scene,
    )
