"""The one rule that maps label-grid pixels onto another modality's pixel grid.

Sampling (patch centres), dense and patch inference, baseline prediction and the tiling's window conversion all go
through :class:`GridMap`, so a label pixel and "its" modality pixels are the same everywhere:

* coordinates: label-grid pixel coordinate ``(row, col)`` -> the other grid's ``(row * scale_y + off_y,
  col * scale_x + off_x)`` (north-up grids: both affine transforms without rotation terms);
* centre rule: the modality pixel holding a label pixel's centre is ``floor((i + 0.5) * scale + off)``; a centre
  that falls on a pixel edge, up to float rounding (:data:`EDGE_TOLERANCE`), belongs to the pixel after the edge;
* windows: a label window's edges map to the other grid's edges; :meth:`GridMap.exact_edges` refuses edges that are
  not whole pixels there (a fractional window cannot be read without resampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

from core.data.scene import Modality
from core.errors import GridMismatchError
from core.geo.windows import PixelWindow

EDGE_TOLERANCE = 1e-9
"""Pixels: a mapped centre this close below a pixel edge is taken to lie on it (float rounding)."""
ALIGN_TOLERANCE = 1e-6
"""Pixels: a mapped window edge this close to a whole pixel is taken to be on it."""


@dataclass(frozen=True)
class GridMap:
    """Label-grid pixel coordinates -> pixel coordinates of another grid: ``x' = x * scale + off`` per axis."""

    scale_y: float
    off_y: float
    scale_x: float
    off_x: float

    @classmethod
    def between(cls, label: Modality, other: Modality) -> GridMap:
        """The map from ``label``'s pixel grid to ``other``'s.

        Raises:
            GridMismatchError: either grid is rotated (only north-up grids are supported).
        """
        s, d = Affine(*label.transform), Affine(*other.transform)
        if s.b or s.d or d.b or d.d:
            raise GridMismatchError(
                f"grids of {label.name!r} / {other.name!r} are rotated; only north-up grids are "
                "supported: warp the rasters to a north-up grid before registering the scene"
            )
        a = ~d @ s
        return cls(a.e, a.f, a.a, a.c)

    def centre_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the other grid holding the centres of label rows ``rows`` (int64)."""
        return np.floor((np.asarray(rows) + 0.5) * self.scale_y + self.off_y + EDGE_TOLERANCE).astype(np.int64)

    def centre_cols(self, cols: np.ndarray) -> np.ndarray:
        """Columns of the other grid holding the centres of label columns ``cols`` (int64)."""
        return np.floor((np.asarray(cols) + 0.5) * self.scale_x + self.off_x + EDGE_TOLERANCE).astype(np.int64)

    def covering(self, window: PixelWindow) -> tuple[int, int, int, int]:
        """``(row_off, col_off, height, width)`` on the other grid of the ground of ``window``, rounded to whole
        pixels (may reach past the other raster; a dense model's read)."""
        return (
            round(window.row_off * self.scale_y + self.off_y),
            round(window.col_off * self.scale_x + self.off_x),
            round(window.height * self.scale_y),
            round(window.width * self.scale_x),
        )

    def edges(self, window: PixelWindow) -> tuple[float, float, float, float]:
        """``(row0, col0, row1, col1)``: the edges of ``window`` on the other grid, unrounded (``row0 <= row1``)."""
        r0, r1 = sorted((window.row_off * self.scale_y + self.off_y, window.row_end * self.scale_y + self.off_y))
        c0, c1 = sorted((window.col_off * self.scale_x + self.off_x, window.col_end * self.scale_x + self.off_x))
        return r0, c0, r1, c1

    def exact_edges(self, window: PixelWindow) -> tuple[int, int, int, int] | None:
        """:meth:`edges` as whole pixels, or None when an edge falls inside a pixel of the other grid."""
        vals = self.edges(window)
        rounded = tuple(round(v) for v in vals)
        if any(abs(v - r) > ALIGN_TOLERANCE for v, r in zip(vals, rounded)):
            return None
        return rounded  # type: ignore[return-value]
