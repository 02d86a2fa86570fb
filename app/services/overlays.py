"""Class maps (predictions, labels, error masks) as small RGBA PNGs that a web map can overlay.

A web map (Leaflet) draws an image overlay stretched between two lat/lon corners in Web Mercator, so a class map
is warped to EPSG:3857 (nearest neighbour, class ids never blended) and its corners are given in EPSG:4326. Large
rasters are read decimated first (at most ``max_size`` pixels along the longer side; GeoTIFF overviews are used
when present) so the page stays responsive. Maps of scenes that are not georeferenced get ``bounds=None`` and are
shown as plain images.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import from_bounds

from core.data.scene import ClassInfo

log = logging.getLogger(__name__)

MAX_SIZE = 1024
ERROR_RGBA = (230, 0, 0, 255)
CORRECT_RGBA = (0, 170, 0, 110)
_MERC = CRS.from_epsg(3857)


@dataclass(frozen=True)
class Overlay:
    """An RGBA image ready for ``folium.raster_layers.ImageOverlay``.

    Attributes:
        png: PNG bytes of the ``(rows, cols, 4)`` uint8 image (transparent where there is no class).
        bounds: ``[[south, west], [north, east]]`` in EPSG:4326 degrees, or None (not georeferenced).
        shape: (rows, cols) of the image.
        source_shape: (rows, cols) of the raster it was made from.
        factor: decimation factor used when reading (1 = full resolution).
    """

    png: bytes
    bounds: list[list[float]] | None
    shape: tuple[int, int]
    source_shape: tuple[int, int]
    factor: int

    @property
    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class ClassGrid:
    """Class ids read from a raster: ``data`` (rows, cols) uint8, 0 = no class, with its grid."""

    data: np.ndarray
    transform: Affine
    crs: CRS | None
    source_shape: tuple[int, int]
    factor: int


def decimation(height: int, width: int, max_size: int = MAX_SIZE) -> int:
    """The integer factor that brings the longer side down to at most ``max_size`` pixels."""
    return max(1, math.ceil(max(height, width) / max_size))


def read_classes(
    path: str,
    max_size: int = MAX_SIZE,
    bounds: tuple[float, float, float, float] | None = None,
) -> ClassGrid:
    """Band 1 of a class raster, decimated (nearest) to at most ``max_size`` px, optionally cut to ``bounds``
    (minx, miny, maxx, maxy in the raster's CRS, snapped outward to whole pixels)."""
    with rasterio.open(path) as src:
        window = None
        transform = src.transform
        height, width = src.height, src.width
        if bounds is not None:
            window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
            window = window.intersection(rasterio.windows.Window(0, 0, src.width, src.height))
            transform = src.window_transform(window)
            height, width = int(window.height), int(window.width)
        f = decimation(height, width, max_size)
        out_shape = (max(1, height // f), max(1, width // f))
        data = src.read(1, window=window, out_shape=out_shape, resampling=Resampling.nearest)
        crs = src.crs
    transform = transform @ Affine.scale(width / out_shape[1], height / out_shape[0])
    data = np.where(np.isfinite(data), data, 0).clip(0, 255).astype(np.uint8)
    return ClassGrid(data, transform, crs, (height, width), f)


def colourise(classes: np.ndarray, palette: dict[int, tuple[int, int, int, int]], alpha: int = 255) -> np.ndarray:
    """``(rows, cols)`` class ids -> ``(rows, cols, 4)`` uint8 RGBA; ids missing from ``palette`` are transparent."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for cid, rgba in palette.items():
        lut[int(cid)] = (*rgba[:3], min(alpha, rgba[3]))
    return lut[classes]


def class_palette(classes: tuple[ClassInfo, ...] | list[ClassInfo]) -> dict[int, tuple[int, int, int, int]]:
    """Class id -> (r, g, b, 255) from the scene's class colours."""
    out = {}
    for c in classes:
        h = c.color.lstrip("#")
        out[c.id] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return out


def error_classes(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where both are labelled: 1 = prediction differs from the label, 2 = agrees; 0 elsewhere (same shape)."""
    if pred.shape != labels.shape:
        raise ValueError(f"prediction {pred.shape} and labels {labels.shape} are not on the same grid")
    scored = (pred > 0) & (labels > 0)
    return np.where(scored, np.where(pred != labels, 1, 2), 0).astype(np.uint8)


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def to_overlay(grid: ClassGrid, rgba: np.ndarray) -> Overlay:
    """Warp an RGBA image on ``grid`` to Web Mercator and wrap it as an :class:`Overlay` (no warp without CRS)."""
    if grid.crs is None:
        return Overlay(_png(rgba), None, rgba.shape[:2], grid.source_shape, grid.factor)
    rows, cols = grid.data.shape
    left, top = grid.transform @ (0, 0)
    right, bottom = grid.transform @ (cols, rows)
    dst_t, dst_w, dst_h = calculate_default_transform(
        grid.crs,
        _MERC,
        cols,
        rows,
        left=min(left, right),
        bottom=min(top, bottom),
        right=max(left, right),
        top=max(top, bottom),
    )
    scale = max(dst_w, dst_h) / max(rows, cols)  # keep about the same number of pixels
    if scale > 1.05:
        dst_w, dst_h = max(1, round(dst_w / scale)), max(1, round(dst_h / scale))
        dst_t = dst_t @ Affine.scale(scale)
    out = np.zeros((4, dst_h, dst_w), dtype=np.uint8)
    for b in range(4):
        reproject(
            np.ascontiguousarray(rgba[:, :, b]),
            out[b],
            src_transform=grid.transform,
            src_crs=grid.crs,
            dst_transform=dst_t,
            dst_crs=_MERC,
            resampling=Resampling.nearest,
            src_nodata=None,
            dst_nodata=0,
        )
    west, north = dst_t @ (0, 0)
    east, south = dst_t @ (dst_w, dst_h)
    tr = Transformer.from_crs(_MERC, "EPSG:4326", always_xy=True)
    (lon0, lon1), (lat0, lat1) = tr.transform([west, east], [south, north])
    image = np.moveaxis(out, 0, -1)
    return Overlay(
        _png(image),
        [[float(lat0), float(lon0)], [float(lat1), float(lon1)]],
        image.shape[:2],
        grid.source_shape,
        grid.factor,
    )


def class_overlay(
    path: str,
    classes: tuple[ClassInfo, ...] | list[ClassInfo],
    max_size: int = MAX_SIZE,
    bounds: tuple[float, float, float, float] | None = None,
) -> Overlay:
    """A class raster (prediction or labels) coloured with ``classes`` as an overlay (see module docstring)."""
    grid = read_classes(path, max_size, bounds)
    return to_overlay(grid, colourise(grid.data, class_palette(classes)))


def raster_bounds(path: str) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a raster in its own CRS."""
    with rasterio.open(path) as src:
        return tuple(src.bounds)  # type: ignore[return-value]


def error_overlay(prediction: str, labels: str, max_size: int = MAX_SIZE) -> tuple[Overlay, float | None]:
    """Red where ``prediction`` differs from ``labels`` (on the labels' grid cut to the prediction's extent),
    faint green where they agree; returns the overlay and the share of disagreeing labelled pixels (None if
    there are none)."""
    pred = read_classes(prediction, max_size)
    lab = read_classes(labels, max_size, bounds=raster_bounds(prediction) if pred.crs is not None else None)
    if lab.data.shape != pred.data.shape:  # different decimation or extents: resample labels onto pred's grid
        resampled = np.zeros_like(pred.data)
        if pred.crs is not None and lab.crs is not None:
            reproject(
                lab.data,
                resampled,
                src_transform=lab.transform,
                src_crs=lab.crs,
                dst_transform=pred.transform,
                dst_crs=pred.crs,
                resampling=Resampling.nearest,
                src_nodata=0,
                dst_nodata=0,
            )
        else:
            r = min(pred.data.shape[0], lab.data.shape[0])
            c = min(pred.data.shape[1], lab.data.shape[1])
            resampled[:r, :c] = lab.data[:r, :c]
        lab_data = resampled
    else:
        lab_data = lab.data
    err = error_classes(pred.data, lab_data)
    scored = int((err > 0).sum())
    share = float((err == 1).sum() / scored) if scored else None
    rgba = colourise(err, {1: ERROR_RGBA, 2: CORRECT_RGBA})
    return to_overlay(pred, rgba), share


def scene_quicklook(paths: tuple[str, ...], max_size: int = 768) -> Overlay | None:
    """A true-colour-ish quicklook of a scene's first image file (bands 3, 2, 1 or the first band as grey,
    2-98 % stretch) as an overlay, so an offline map shows the imagery; None if it cannot be read."""
    if not paths:
        return None
    try:
        with rasterio.open(paths[0]) as src:
            f = decimation(src.height, src.width, max_size)
            shape = (max(1, src.height // f), max(1, src.width // f))
            bands = [3, 2, 1] if src.count >= 3 else [1, 1, 1]
            data = src.read(bands, out_shape=(3, *shape), resampling=Resampling.nearest).astype(np.float32)
            transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
            crs = src.crs
            full = (src.height, src.width)
    except (rasterio.errors.RasterioError, OSError) as exc:
        log.warning("no quicklook for %s: %s", paths[0], exc)
        return None
    valid = np.isfinite(data).all(axis=0) & (data != 0).any(axis=0)
    rgb = np.zeros((*shape, 4), dtype=np.uint8)
    for i in range(3):
        band = data[i][valid]
        lo, hi = np.percentile(band, (2, 98)) if band.size else (0.0, 1.0)
        rgb[:, :, i] = np.clip((data[i] - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    rgb[:, :, 3] = np.where(valid, 255, 0)
    grid = ClassGrid(np.zeros(shape, dtype=np.uint8), transform, crs, full, f)
    return to_overlay(grid, rgb)
