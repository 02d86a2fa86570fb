"""Reusable raster inspection: open safely, read a profile, compare grids, detect truncation, fingerprint files.

Everything here reads files and returns plain values; nothing is stored. Errors are domain errors from
:mod:`core.errors` naming the file and what to do about it. Grids are compared on the *ground*, not by CRS codes:
two CRSs are equivalent over a grid when a few points of the grid transformed from one to the other land within a
fraction of a pixel (so ``EPSG:32119`` and ``EPSG:3358``, the same projection on two realisations of NAD83, match).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from core.data.digest import DIGEST_CHUNK as DIGEST_CHUNK  # re-exported: the fingerprint size
from core.data.digest import file_change, file_digest
from core.data.scene import FileFingerprint, Transform
from core.errors import RasterError, RasterReadError

log = logging.getLogger(__name__)

CRS_TOLERANCE_PX = 0.25
"""Largest shift, in pixels, between two CRSs over a grid for them to count as the same projection."""


@dataclass(frozen=True)
class RasterInfo:
    """What registration needs to know about one raster file.

    Attributes:
        path: absolute path.
        width, height: size in pixels (cols, rows).
        count: number of bands.
        dtypes: numpy dtype name of each band.
        crs_wkt: the CRS as WKT, ``None`` when the file has none.
        transform: affine geotransform ``(a, b, c, d, e, f)``; the identity when the file has none.
        georeferenced_transform: False when the file carries no geotransform (and no GCPs) at all.
        nodata: per-band nodata (``None`` where undeclared or NaN: NaN is always nodata for float bands).
        descriptions: per-band descriptions (``None`` where unset).
        undeclared_nodata: 1-based indexes of the bands that declare no nodata at all (NaN counts as declared).
    """

    path: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs_wkt: str | None
    transform: Transform
    georeferenced_transform: bool
    nodata: tuple[float | None, ...]
    descriptions: tuple[str | None, ...]
    undeclared_nodata: tuple[int, ...] = ()

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in CRS units (pixels when not georeferenced), whatever the sign of the axes."""
        return grid_bounds(self.transform, self.width, self.height)


def grid_bounds(transform: Transform, width: int, height: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a ``width`` x ``height`` grid with a north-up or south-up affine."""
    a, _b, c, _d, e, f = transform
    xs = (c, c + a * width)
    ys = (f, f + e * height)
    return min(xs), min(ys), max(xs), max(ys)


@contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """Open ``path`` read-only, turning rasterio's errors into domain errors that name the file.

    Raises:
        RasterReadError: the file does not exist or cannot be read (permissions, a folder).
        RasterError: the file exists but is not a raster GDAL understands (or is cut so short its header is gone).
    """
    p = Path(path)
    if not p.exists():
        raise RasterReadError(
            f"raster file {str(p)!r} does not exist; check the path (relative paths are resolved from {os.getcwd()!r})"
        )
    if not p.is_file():
        raise RasterReadError(f"{str(p)!r} is not a file; give the path of a GeoTIFF (or another GDAL raster)")
    if not os.access(p, os.R_OK):
        raise RasterReadError(f"raster file {str(p)!r} is not readable; check its permissions")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(p)
    except RasterioIOError as exc:
        raise RasterError(
            f"{str(p)!r} is not a raster GDAL can read ({exc}); give a GeoTIFF, or re-export the file "
            "if it was cut short by a failed copy"
        ) from exc
    try:
        yield src
    finally:
        src.close()


def _has_geotransform(src: rasterio.DatasetReader) -> bool:
    return not (src.transform == Affine.identity() and not src.gcps[0])


def read_info(path: str | Path) -> RasterInfo:
    """Profile of one raster (no pixel reads). See :class:`RasterInfo`."""
    p = Path(path).expanduser().resolve()
    with open_raster(p) as src:
        nodata: list[float | None] = []
        for v in src.nodatavals:
            nodata.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        return RasterInfo(
            path=str(p),
            width=src.width,
            height=src.height,
            count=src.count,
            dtypes=tuple(src.dtypes),
            crs_wkt=src.crs.to_wkt() if src.crs else None,
            transform=tuple(src.transform[:6]),  # type: ignore[arg-type]
            georeferenced_transform=_has_geotransform(src),
            nodata=tuple(nodata),
            descriptions=tuple(src.descriptions),
            undeclared_nodata=tuple(k + 1 for k, v in enumerate(src.nodatavals) if v is None),
        )


def check_readable(path: str | Path) -> None:
    """Read a few blocks of every band, the last block included, to catch truncated or corrupt files cheaply.

    A GeoTIFF cut short keeps a valid header, so it opens; only reading its last blocks fails.

    Raises:
        RasterError: a block could not be decoded (truncated or corrupt file).
    """
    p = Path(path)
    with open_raster(p) as src:
        bh, bw = src.block_shapes[0]
        bh, bw = min(bh, src.height), min(bw, src.width)
        rows = sorted({0, max(0, (src.height // 2) - bh // 2), src.height - bh})
        cols = sorted({0, src.width - bw})
        try:
            for r in rows:
                for c in cols:
                    src.read(window=Window(c, r, bw, bh))  # every band: band-interleaved files store them apart
        except RasterioIOError as exc:
            raise RasterError(
                f"{str(p)!r} is truncated or corrupt: reading pixels failed near row {r}, col {c} "
                f"({exc}); copy or export the file again"
            ) from exc


def inspect_raster(path: str | Path) -> RasterInfo:
    """:func:`read_info` plus :func:`check_readable`: the profile of a raster that can be read to its end."""
    info = read_info(path)
    check_readable(info.path)
    return info


def _crs(wkt: str) -> CRS:
    try:
        return CRS.from_user_input(wkt)
    except CRSError as exc:  # pragma: no cover - GDAL already parsed it
        raise RasterError(f"CRS {wkt[:80]!r}... cannot be interpreted: {exc}") from exc


def crs_shift_px(wkt_a: str, wkt_b: str, transform: Transform, width: int, height: int) -> float:
    """Largest distance, in pixels, between grid points located in CRS ``a`` and the same points moved to ``b``.

    Nine points (corners, edge midpoints, centre) of the grid ``transform`` / ``width`` / ``height`` (given in
    ``a``) are transformed to ``b``; their distance to the untransformed coordinates, divided by the pixel size,
    says whether the two CRSs put the same coordinates at the same place on the ground. ``inf`` when no
    transformation exists.
    """
    a, b = _crs(wkt_a), _crs(wkt_b)
    if a == b:
        return 0.0
    aff = Affine(*transform)
    px = max(abs(aff.a), abs(aff.e), 1e-12)
    pts = [aff @ (c, r) for r in (0, height / 2, height) for c in (0, width / 2, width)]
    xs, ys = zip(*pts)
    try:
        tx, ty = Transformer.from_crs(a, b, always_xy=True).transform(xs, ys, errcheck=True)
    except ProjError:
        return math.inf
    d = np.hypot(np.asarray(tx) - np.asarray(xs), np.asarray(ty) - np.asarray(ys))
    if not np.all(np.isfinite(d)):
        return math.inf
    return float(d.max() / px)


def grid_differences(
    ref: RasterInfo, other: RasterInfo, *, check_crs: bool = True, tol_px: float = CRS_TOLERANCE_PX
) -> list[str]:
    """How ``other``'s pixel grid differs from ``ref``'s: an empty list when they line up.

    Compares size, transform (within 1e-6 of a pixel) and, with ``check_crs``, the CRS on the ground
    (:func:`crs_shift_px` under ``tol_px``), never CRS codes. Each difference is a phrase quoting both values.
    """
    diffs: list[str] = []
    if (ref.width, ref.height) != (other.width, other.height):
        diffs.append(f"size {other.width}x{other.height} px instead of {ref.width}x{ref.height}")
    px = max(abs(ref.transform[0]), abs(ref.transform[4]), 1e-12)
    if any(abs(x - y) > 1e-6 * px for x, y in zip(ref.transform, other.transform)):
        diffs.append(f"transform {_fmt(other.transform)} instead of {_fmt(ref.transform)}")
    if check_crs:
        if (ref.crs_wkt is None) != (other.crs_wkt is None):
            diffs.append(f"CRS {_crs_name(other.crs_wkt)} instead of {_crs_name(ref.crs_wkt)}")
        elif ref.crs_wkt and other.crs_wkt:
            shift = crs_shift_px(ref.crs_wkt, other.crs_wkt, ref.transform, ref.width, ref.height)
            if shift > tol_px:
                diffs.append(
                    f"CRS {_crs_name(other.crs_wkt)} instead of {_crs_name(ref.crs_wkt)} (the same "
                    f"coordinates land {shift:.3g} px apart)"
                )
    return diffs


def _fmt(t: Transform) -> str:
    return "(" + ", ".join(f"{v:.12g}" for v in t) + ")"


def _crs_name(wkt: str | None) -> str:
    if wkt is None:
        return "none"
    c = _crs(wkt)
    code = c.to_epsg(min_confidence=70)
    return f"EPSG:{code} ({c.name})" if code else repr(c.name)


def crs_name(wkt: str | None) -> str:
    """A short human name of a CRS: ``EPSG:32633 (WGS 84 / UTM zone 33N)`` or its name; ``none`` for None."""
    return _crs_name(wkt)


def file_fingerprint(path: str | Path) -> FileFingerprint:
    """Size, mtime (ns) and sha256 of (first 1 MiB + last 1 MiB + size): cheap on big files, catches rewrites."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return FileFingerprint(path=str(p), size=st.st_size, mtime_ns=st.st_mtime_ns, digest=file_digest(p, st.st_size))


def fingerprint_change(fp: FileFingerprint) -> str | None:
    """Why the file of ``fp`` no longer matches it (``"vanished"``, ``"size ..."``, ``"content changed"``), or None.

    Size and mtime are compared first; the digest is recomputed only when the mtime moved (a touched but identical
    file still matches). The rules live in :mod:`core.data.digest`, which Dask workers run too.
    """
    return file_change(fp.path, fp.size, fp.mtime_ns, fp.digest)


def unique_values(path: str | Path, band: int = 1) -> np.ndarray:
    """Sorted distinct values of one band, read block by block (bounded memory on large label rasters)."""
    values: set[float] = set()
    with open_raster(path) as src:
        try:
            for _, window in src.block_windows(band):
                values.update(np.unique(src.read(band, window=window)).tolist())
        except RasterioIOError as exc:
            raise RasterError(f"{str(path)!r} is truncated or corrupt: {exc}; copy or export the file again") from exc
    return np.array(sorted(values, key=lambda v: (math.isnan(v), v)))
