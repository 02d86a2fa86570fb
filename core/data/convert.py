"""Converters from sample formats that are not rasters (numpy arrays, MATLAB files) to GeoTIFFs the registry reads.

Both converters are idempotent: an output that already holds the same pixels, size and transform is left untouched
(its mtime too), so scenes registered from earlier outputs keep matching their fingerprints.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from core.errors import RasterError, RasterReadError

log = logging.getLogger(__name__)

SENTINEL2_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""Band order of Sentinel-2 L1C 13-band stacks (eo-learn's REFERENCE_SCENES.npy)."""

HOUSTON_HSI_SCALE = 4
"""HSI pixel size in RGB pixels: HSI pixel (r, c) covers RGB pixels 4r..4r+3, 4c..4c+3."""


def _same_raster(path: Path, data: np.ndarray, transform: Affine, crs: str | None) -> bool:
    """True when ``path`` already holds exactly ``data`` ((bands, rows, cols)) with this transform and CRS."""
    if not path.exists():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if (src.count, src.height, src.width) != data.shape or src.dtypes[0] != data.dtype.name:
                    return False
                if not src.transform.almost_equals(transform) or (src.crs is None) != (crs is None):
                    return False
                if crs is not None and src.crs != rasterio.crs.CRS.from_user_input(crs):
                    return False
                return bool(np.array_equal(src.read(), data, equal_nan=data.dtype.kind == "f"))
    except RasterioIOError:
        return False


def _write(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: str | None,
    nodata: float | None = None,
    band_names: tuple[str, ...] = (),
) -> Path:
    """Write ``data`` ((bands, rows, cols)) as a deflate GeoTIFF atomically, unless ``path`` already holds it."""
    if _same_raster(path, data, transform, crs):
        log.debug("%s is up to date", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        transform=transform,
        compress="deflate",
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )
    if data.shape[1] < 256 or data.shape[2] < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
    os.replace(tmp, path)
    log.info("wrote %s (%s, %s)", path, "x".join(map(str, data.shape)), data.dtype.name)
    return path


def slovenia_to_geotiff(src_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write eo-learn's Slovenia sample (numpy arrays) as GeoTIFFs in EPSG:32633.

    Reads ``reference_scenes.npy`` ((dates=5, rows=101, cols=100, bands=13) float32 reflectance), ``lulc.npy``
    ((101, 100, 1) class codes) and ``bbox.geojson`` (the extent, EPSG:32633 metres). The transform maps the 100 x 101
    pixel grid onto the bbox (about 10 m pixels, north up).

    Returns:
        ``{"images": [path per date, in array order], "labels": path, "crs": "EPSG:32633", "transform": (a..f)}``;
        images are ``s2_t<k>.tif`` (13 float32 bands named B01..B12, nodata NaN), labels ``lulc.tif`` (uint8).
    """
    src, out = Path(src_dir), Path(out_dir)
    try:
        scenes = np.load(src / "reference_scenes.npy")
        lulc = np.load(src / "lulc.npy")
        bbox = json.loads((src / "bbox.geojson").read_text())
    except FileNotFoundError as exc:
        raise RasterReadError(
            f"{exc.filename!r} is missing; {str(src)!r} must hold reference_scenes.npy, lulc.npy "
            "and bbox.geojson (eo-learn's example data)"
        ) from exc
    if scenes.ndim != 4 or lulc.shape[:2] != scenes.shape[1:3]:
        raise RasterError(
            f"reference_scenes.npy has shape {scenes.shape} and lulc.npy {lulc.shape}: expected "
            "(dates, rows, cols, bands) and (rows, cols, 1) on the same grid"
        )
    crs_name = bbox.get("crs", {}).get("properties", {}).get("name", "EPSG:32633")
    crs = "EPSG:" + crs_name.rsplit(":", 1)[-1] if "EPSG" in crs_name else crs_name
    ring = np.asarray(bbox["coordinates"][0], dtype=float)
    (xmin, ymin), (xmax, ymax) = ring.min(axis=0), ring.max(axis=0)
    rows, cols = scenes.shape[1:3]
    transform = Affine((xmax - xmin) / cols, 0.0, xmin, 0.0, -(ymax - ymin) / rows, ymax)
    bands = SENTINEL2_L1C_BANDS if scenes.shape[3] == len(SENTINEL2_L1C_BANDS) else ()
    images = [
        str(
            _write(
                out / f"s2_t{k + 1}.tif",
                np.ascontiguousarray(np.moveaxis(scenes[k], -1, 0), "float32"),
                transform,
                crs,
                nodata=float("nan"),
                band_names=bands,
            )
        )
        for k in range(scenes.shape[0])
    ]
    if lulc.max() > 255 or lulc.min() < 0:
        raise RasterError(f"lulc.npy holds codes {int(lulc.min())}..{int(lulc.max())}; class ids must be 0..255")
    labels = _write(out / "lulc.tif", lulc.reshape(rows, cols)[None].astype("uint8"), transform, crs)
    return {"images": images, "labels": str(labels), "crs": crs, "transform": tuple(transform[:6])}


def houston_to_geotiff(mat_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the Houston crop (``hyprImg``, ``rgbImg``, ``clasLabs`` of a MATLAB file) as non-georeferenced GeoTIFFs.

    Coordinates are RGB pixels (x = column, y = row, y growing downwards): RGB and labels have the identity
    transform (pixel size 1), the HSI pixel size :data:`HOUSTON_HSI_SCALE`, so HSI pixel (r, c) covers RGB pixels
    ``4r..4r+3`` x ``4c..4c+3`` and both grids cover the same ground.

    Returns:
        ``{"hsi": path, "rgb": path, "labels": path}``: ``hsi.tif`` (48 bands uint16, 128x128), ``rgb.tif``
        (3 bands uint8, 512x512), ``labels.tif`` (uint8 class ids 0..12, 512x512).
    """
    from scipy.io import loadmat

    mat_path, out = Path(mat_path), Path(out_dir)
    if not mat_path.exists():
        raise RasterReadError(f"{str(mat_path)!r} does not exist; give the path of houston_dataset.mat")
    try:
        mat = loadmat(mat_path)
    except (ValueError, OSError) as exc:
        raise RasterError(f"{str(mat_path)!r} is not a readable MATLAB file ({exc})") from exc
    missing = [k for k in ("hyprImg", "rgbImg", "clasLabs") if k not in mat]
    if missing:
        raise RasterError(f"{str(mat_path)!r} lacks variables {missing}; expected hyprImg, rgbImg and clasLabs")
    hsi = np.ascontiguousarray(np.moveaxis(mat["hyprImg"], -1, 0))
    rgb = np.ascontiguousarray(np.moveaxis(mat["rgbImg"], -1, 0))
    labels = np.ascontiguousarray(mat["clasLabs"].astype("uint8")[None])
    if rgb.shape[1:] != labels.shape[1:] or tuple(s * HOUSTON_HSI_SCALE for s in hsi.shape[1:]) != rgb.shape[1:]:
        raise RasterError(
            f"grids do not relate: HSI {hsi.shape[1:]}, RGB {rgb.shape[1:]}, labels {labels.shape[1:]}; "
            f"expected labels == RGB == {HOUSTON_HSI_SCALE} x HSI"
        )
    ident = Affine.identity()
    scaled = Affine.scale(HOUSTON_HSI_SCALE)
    return {
        "hsi": str(_write(out / "hsi.tif", hsi, scaled, None)),
        "rgb": str(_write(out / "rgb.tif", rgb, ident, None, band_names=("red", "green", "blue"))),
        "labels": str(_write(out / "labels.tif", labels, ident, None)),
    }
