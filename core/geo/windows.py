"""Pure window arithmetic on the label grid: pixel windows, sliding-window tiling, AOI filtering.

Everything here is in pixel units of one grid (the scene's label grid unless said otherwise): rows grow downwards,
columns to the right, a window covers rows ``[row_off, row_off + height)`` and cols ``[col_off, col_off + width)``.
No I/O: these functions only do arithmetic on :class:`PixelWindow` values and shapely geometries given in
``(col, row)`` pixel coordinates (x = col, y = row; a pixel (r, c) is the square ``[c, c+1] x [r, r+1]``).

The ragged edge (the thesis' rule): windows step by ``stride`` from the start of the area; a window that would pass
the raster (or ``bounds``) edge is moved back so that it ends exactly at the edge. So every pixel of the area is
covered, no window reads outside the raster, and the last window overlaps its neighbour more than the others do.
A raster (bounds) smaller than a tile along an axis gets one window clipped to the raster along that axis (its
height/width is the raster's, not ``tile_size``); the tiling job pads such a sample to the tile size with zeros and
label 0 (unlabelled) and records the true size in ``loc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True, order=True)
class PixelWindow:
    """A rectangle of whole pixels on one grid: offsets and size in pixels (rows, cols)."""

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("row_off", "col_off", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"PixelWindow.{name} must be an int, got {value!r} ({type(value).__name__})")
        if self.row_off < 0 or self.col_off < 0:
            raise ValueError(f"PixelWindow offsets must be >= 0, got row_off={self.row_off}, col_off={self.col_off}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"PixelWindow size must be >= 1 x 1 pixel, got height={self.height}, width={self.width}")

    @property
    def row_end(self) -> int:
        """First row after the window."""
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        """First column after the window."""
        return self.col_off + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    def to_rasterio(self) -> Window:
        """The same window as a ``rasterio.windows.Window``."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    def to_box(self) -> BaseGeometry:
        """The window as a shapely box in ``(col, row)`` pixel coordinates."""
        return shapely.box(self.col_off, self.row_off, self.col_end, self.row_end)

    def contains(self, other: PixelWindow) -> bool:
        """True when ``other`` lies entirely inside this window."""
        return (
            self.row_off <= other.row_off
            and self.col_off <= other.col_off
            and other.row_end <= self.row_end
            and other.col_end <= self.col_end
        )

    def intersection(self, other: PixelWindow) -> PixelWindow | None:
        """The overlap of two windows, or None when they share no pixel."""
        r0, c0 = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        r1, c1 = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        if r1 <= r0 or c1 <= c0:
            return None
        return PixelWindow(r0, c0, r1 - r0, c1 - c0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width), the order of the store's ``loc`` array."""
        return (self.row_off, self.col_off, self.height, self.width)


def raster_window(height: int, width: int) -> PixelWindow:
    """The window of a whole raster of ``height`` x ``width`` pixels."""
    return PixelWindow(0, 0, height, width)


def _axis_windows(start: int, length: int, size: int, step: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """(offset, length) pairs along one axis covering ``[start, start+length)`` and staying inside ``[lo, hi)``."""
    if size >= hi - lo:
        return [(lo, hi - lo)]  # the raster is smaller than a tile: one window clipped to it
    out: list[tuple[int, int]] = []
    s = start
    while True:
        eff = min(s, hi - size)  # moved back so it ends at the edge
        if not out or out[-1][0] != eff:
            out.append((eff, size))
        if eff + size >= start + length:
            return out
        s += step


def sliding_windows(
    area: PixelWindow, tile_size: int, stride: int | None = None, bounds: PixelWindow | None = None
) -> list[PixelWindow]:
    """Windows of ``tile_size`` x ``tile_size`` pixels, ``stride`` apart, covering every pixel of ``area``.

    Args:
        area: the pixels to cover (e.g. the AOI's bounding box on the label grid).
        tile_size: window side in pixels.
        stride: step between window starts (default ``tile_size``: no overlap); must be <= ``tile_size``.
        bounds: the raster (or spatial block) no window may leave; default ``area`` itself. Must contain ``area``.

    Returns:
        Windows in row-major order. A window that would pass an edge of ``bounds`` is moved back to end at that
        edge; along an axis where ``bounds`` is shorter than ``tile_size`` there is one window clipped to ``bounds``.
    """
    step = tile_size if stride is None else stride
    if tile_size < 1 or step < 1 or step > tile_size:
        raise ValueError(
            f"need 1 <= stride <= tile_size, got tile_size={tile_size}, stride={stride}: a stride larger "
            "than the tile would leave pixels uncovered"
        )
    bounds = bounds or area
    if not bounds.contains(area):
        raise ValueError(f"area {area} is not inside bounds {bounds}; clip the area to the raster first")
    rows = _axis_windows(area.row_off, area.height, tile_size, step, bounds.row_off, bounds.row_end)
    cols = _axis_windows(area.col_off, area.width, tile_size, step, bounds.col_off, bounds.col_end)
    return [PixelWindow(r, c, h, w) for r, h in rows for c, w in cols]


def windows_in_geometry(windows: list[PixelWindow], geometry: BaseGeometry | None) -> list[PixelWindow]:
    """The windows sharing area with ``geometry`` (pixel coords); touching only along an edge does not count.

    ``None`` means the whole raster: every window is kept.
    """
    if geometry is None:
        return list(windows)
    shapely.prepare(geometry)
    kept = []
    for w in windows:
        box = w.to_box()
        if geometry.intersects(box) and not geometry.touches(box):
            kept.append(w)
    return kept


def block_grid(height: int, width: int, block_size: int, origin: tuple[int, int] = (0, 0)) -> list[PixelWindow]:
    """Disjoint square blocks of ``block_size`` pixels tiling a raster, row-major, with block corners on
    ``origin`` (row, col) plus multiples of ``block_size``; blocks at the raster's edges are cut short."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows, cols = _block_starts(height, block_size, origin[0]), _block_starts(width, block_size, origin[1])
    return [
        PixelWindow(r, c, min(r_end, height) - r, min(c_end, width) - c)
        for r, r_end in zip(rows, [*rows[1:], height], strict=True)
        for c, c_end in zip(cols, [*cols[1:], width], strict=True)
    ]


def _block_starts(extent: int, block_size: int, origin: int) -> list[int]:
    """Start of each block along an axis of ``extent`` pixels whose block corners fall on ``origin + k * block``."""
    first = origin % block_size
    return ([0] if first else []) + list(range(first, extent, block_size))
