"""Minimum mapping unit: merge regions of a class map into their neighbours until none is below the MMU.

A *region* is a 4-connected set of pixels of one class (the same connectivity as the polygons). The map is read
window by window (memory bounded by the window, plus a few bytes per region and per region border):

1. *Region graph* (:func:`plan_mmu`): each window is labelled into regions (``scipy.ndimage.label``); a region cut
   by a window border is joined to its other part(s) through the pixel pairs across the border (same class), and
   every pair of 4-adjacent pixels of different regions adds 1 to the length of their shared border. Per region
   only its class and pixel count are kept, per pair of neighbouring regions only the border length.
2. *Merging* (:func:`merge_regions`, on the graph, no pixels): in each pass every region below the MMU that has
   a mapped neighbour joins the neighbour sharing its longest border (ties: the larger neighbour, then the one
   whose first pixel in row-major order comes first); the regions so joined take the class of their largest member
   (same ties; a region at or above the MMU is never joined to another such region, so it keeps its class);
   neighbouring regions that now have the same class become one (they are one polygon). Passes repeat until no
   region below the MMU has a neighbour. Every pass removes regions, so it ends.
   Every rule reads only the map (classes, sizes, borders, pixel positions), so the result does not depend on
   the window size.
3. The second read (:meth:`MmuPlan.apply`) labels each window again (the same labels) and gives each pixel its
   region's final class.

Nodata (class 0) is never filled and never fills: the mapped area is unchanged, only classes move. A region
below the MMU with no mapped neighbour at all (an island in nodata, or the whole map) cannot be merged and is
kept as it is (dropping it would lose mapped area); :attr:`MmuPlan.unmerged` counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

CLASS_NODATA = 0
_FOUR = ndimage.generate_binary_structure(2, 1)
_SHIFT = np.int64(2**32)

Progress = Callable[[str, int, int], None]


def windows(height: int, width: int, size: int) -> Iterator[Window]:
    """Row-major ``size`` x ``size`` windows covering the raster (the last row and column ragged)."""
    for r in range(0, height, size):
        for c in range(0, width, size):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def label(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of each class: (int32 labels, 0 = nodata; class id of label ``i`` at index ``i``)."""
    labels = np.zeros(classes.shape, dtype=np.int32)
    class_of = [CLASS_NODATA]
    for k in np.unique(classes):
        if k == CLASS_NODATA:
            continue
        lab, n = ndimage.label(classes == k, structure=_FOUR)
        labels[lab > 0] = lab[lab > 0] + len(class_of) - 1
        class_of.extend([int(k)] * n)
    return labels, np.asarray(class_of, dtype=np.int64)


@dataclass(frozen=True)
class MmuPlan:
    """The result of the merging: the final class of every region of every window.

    Attributes:
        window: window side in pixels (the windows of :func:`windows`).
        offsets: id of the first region of each window (row-major window order); a window's label ``i`` >= 1 is
            region ``offsets[w] + i - 1``.
        final_class: final class id of each region (uint8, indexed by region id).
        regions: regions after merging (what the polygons will be, up to polygons cut by nothing).
        unmerged: regions below the MMU left as they are because they have no mapped neighbour.
        passes: merging passes run.
    """

    window: int
    offsets: tuple[int, ...]
    final_class: np.ndarray
    regions: int
    unmerged: int
    passes: int

    def apply(self, index: int, classes: np.ndarray) -> np.ndarray:
        """The classes of window number ``index`` (as read) after merging: same shape, uint8, nodata kept."""
        labels, _ = label(classes)
        lut = np.concatenate(
            [[CLASS_NODATA], self.final_class[self.offsets[index] : self.offsets[index] + labels.max()]]
        )
        return lut.astype(np.uint8)[labels]


def _keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Undirected pair keys ``min * 2**32 + max`` of region ids (ids < 2**32)."""
    return np.minimum(a, b) * _SHIFT + np.maximum(a, b)


def _aggregate(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, weights=weights).astype(np.int64)


def _pairs(a: np.ndarray, b: np.ndarray, ca: np.ndarray, cb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent pixel pairs (ids ``a``, ``b``; classes ``ca``, ``cb``): (keys of same-class pairs of different
    ids, keys of different-class pairs), nodata (id -1) left out."""
    ok = (a >= 0) & (b >= 0) & (a != b)
    same = ok & (ca == cb)
    return _keys(a[same], b[same]), _keys(a[ok & ~same], b[ok & ~same])


@dataclass
class _Scan:
    """What the first read gathers: per region its class and size, the joins across window borders, borders."""

    classes: list[np.ndarray]
    sizes: list[np.ndarray]
    firsts: list[np.ndarray]
    joins: list[np.ndarray]
    borders: list[tuple[np.ndarray, np.ndarray]]
    offsets: list[int]


def _scan_window(cls: np.ndarray, core: Window, width: int, scan: _Scan, edge: dict[str, np.ndarray]) -> None:
    """Label one window of a map ``width`` pixels wide, add its regions and borders to ``scan``; ``edge`` holds the
    ids and classes of the pixel row above the window (``"up"``, ``"up_cls"``, full map width) and of the column
    left of it (``"left"``, ``"left_cls"``)."""
    labels, class_of = label(cls)
    first = sum(len(c) for c in scan.classes)
    scan.offsets.append(first)
    gid = np.where(labels > 0, labels.astype(np.int64) + first - 1, -1)
    scan.classes.append(class_of[1:].astype(np.uint8))  # narrow types: kept per region until the merge
    scan.sizes.append(np.bincount(labels.ravel(), minlength=len(class_of))[1:].astype(_count_type(cls.size)))
    _, first = np.unique(labels.ravel(), return_index=True)  # labels are 0..n, all present but 0 maybe
    first = first[-(len(class_of) - 1) :] if len(class_of) > 1 else first[:0]
    rows, cols = np.divmod(first, core.width)
    scan.firsts.append((rows + core.row_off) * width + cols + core.col_off)
    c0, c1 = core.col_off, core.col_off + core.width
    pairs = [(gid[:, :-1], gid[:, 1:], cls[:, :-1], cls[:, 1:]), (gid[:-1], gid[1:], cls[:-1], cls[1:])]
    if core.col_off > 0:
        pairs.append((edge["left"], gid[:, 0], edge["left_cls"], cls[:, 0]))
    if core.row_off > 0:
        pairs.append((edge["up"][c0:c1], gid[0], edge["up_cls"][c0:c1], cls[0]))
    same, diff = zip(*(_pairs(*(np.ravel(x) for x in p)) for p in pairs))
    scan.joins.append(np.unique(np.concatenate(same)))
    keys, lengths = _aggregate(np.concatenate(diff), np.ones(sum(len(d) for d in diff)))
    scan.borders.append((keys, lengths.astype(_count_type(2 * cls.size))))
    edge["up"][c0:c1], edge["up_cls"][c0:c1] = gid[-1], cls[-1]
    edge["left"], edge["left_cls"] = gid[:, -1], cls[:, -1]


def _count_type(most: int) -> type:
    """The narrowest of int32 / int64 that holds counts up to ``most``."""
    return np.int32 if most < 2**31 else np.int64


def _components(n: int, keys: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by the pair ``keys``: component id per node."""
    a, b = keys // _SHIFT, keys % _SHIFT
    graph = sparse.coo_matrix((np.ones(len(keys), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


@dataclass
class _Graph:
    """Regions (index = id: ``classes``, ``sizes`` in pixels, ``firsts``: row-major index of the first pixel) and
    their borders (``keys`` of the two ids, ``lengths`` in pixel edges)."""

    classes: np.ndarray
    sizes: np.ndarray
    firsts: np.ndarray
    keys: np.ndarray
    lengths: np.ndarray


def _relabel(comp: np.ndarray, g: _Graph) -> _Graph:
    """Regions joined per ``comp``: the class of each new region is that of its largest member (ties: the first
    pixel first); borders inside a new region dropped."""
    n = int(comp.max()) + 1 if len(comp) else 0
    order = np.lexsort((-g.firsts, g.sizes, comp))  # per component: largest member last
    last = order[np.r_[comp[order][1:] != comp[order][:-1], True]]
    classes = np.zeros(n, dtype=g.classes.dtype)
    classes[comp[last]] = g.classes[last]
    firsts = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(firsts, comp, g.firsts)
    a, b = comp[g.keys // _SHIFT], comp[g.keys % _SHIFT]
    keep = a != b
    keys, lengths = _aggregate(_keys(a[keep], b[keep]), g.lengths[keep])
    return _Graph(classes, np.bincount(comp, weights=g.sizes, minlength=n).astype(np.int64), firsts, keys, lengths)


def _best_neighbours(small: np.ndarray, g: _Graph) -> tuple[np.ndarray, np.ndarray]:
    """(region, its chosen neighbour) for each region in ``small`` with a neighbour: longest border, then the
    larger neighbour, then the neighbour whose first pixel comes first."""
    a, b = g.keys // _SHIFT, g.keys % _SHIFT
    src, dst, ln = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([g.lengths, g.lengths])
    m = small[src]
    src, dst, ln = src[m], dst[m], ln[m]
    order = np.lexsort((-g.firsts[dst], g.sizes[dst], ln, src))
    last = order[np.r_[src[order][1:] != src[order][:-1], True]] if len(order) else order
    return src[last], dst[last]


def merge_regions(g: _Graph, mmu: int) -> tuple[np.ndarray, _Graph, int, int]:
    """Merge regions below ``mmu`` pixels into neighbours (see the module docstring).

    Returns:
        ``(region -> final class, the merged graph, unmerged, passes)``: unmerged counts regions below ``mmu`` that
        have no neighbour to merge into.
    """
    final = np.arange(len(g.classes))  # original region -> current region
    passes = 0
    while True:
        src, dst = _best_neighbours(g.sizes < mmu, g)
        if not len(src):
            break
        passes += 1
        comp = _components(len(g.classes), _keys(src, dst))
        g = _relabel(comp, g)
        final = comp[final]
        same = g.classes[g.keys // _SHIFT] == g.classes[g.keys % _SHIFT]
        if same.any():  # neighbours of one class now: one region (one polygon)
            comp = _components(len(g.classes), g.keys[same])
            g = _relabel(comp, g)
            final = comp[final]
    return g.classes[final], g, int((g.sizes < mmu).sum()), passes


def plan_mmu(src: object, window: int, mmu: int, progress: Progress | None = None) -> MmuPlan:
    """Read the class map ``src`` (an open rasterio dataset, band 1, nodata 0) once, window by window, and merge
    its regions below ``mmu`` pixels (the module docstring says how).

    Returns:
        The :class:`MmuPlan` to apply to each window on the second read.
    """
    height, width = src.height, src.width  # type: ignore[attr-defined]
    wins = list(windows(height, width, window))
    scan = _Scan([], [], [], [], [], [])
    edge: dict[str, np.ndarray] = {"up": np.full(width, -1, np.int64), "up_cls": np.zeros(width, np.uint8)}
    for i, core in enumerate(wins):
        _scan_window(src.read(1, window=core), core, width, scan, edge)  # type: ignore[attr-defined]
        if progress:
            progress("regions", i + 1, len(wins))
    keys, lengths = _aggregate(
        np.concatenate([k for k, _ in scan.borders]), np.concatenate([v for _, v in scan.borders]).astype(float)
    )
    g = _Graph(np.concatenate(scan.classes), np.concatenate(scan.sizes), np.concatenate(scan.firsts), keys, lengths)
    comp = _components(len(g.classes), np.concatenate(scan.joins))  # regions cut by window borders made whole
    final, g, unmerged, passes = merge_regions(_relabel(comp, g), mmu)
    return MmuPlan(window, tuple(scan.offsets), final[comp].astype(np.uint8), len(g.sizes), unmerged, passes)
