"""Stratified random reference sample of a class map, with the map classes as strata.

Sample sizes per stratum are given, or derived from a target standard error of overall accuracy (Olofsson et al.
2014, eq. 13: ``n = (sum_i W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))`` for an expected user's accuracy
``U_i``) and allocated as the good-practice paper recommends: every mapped class gets at least ``min_per_class``
points (50-100), the rest of ``n`` goes to the larger classes in proportion to their mapped area.

Drawing reads the map twice, block by block (memory does not grow with the map): pass 1 counts the pixels of each
class; then ``n_i`` distinct pixel ordinals are drawn per class from ``0..N_i-1`` (``numpy.random.Generator``,
seeded: the same seed, design and map file give the same sample; the file's block layout is part of the pixel
order, so a re-tiled copy of the map gives another sample); pass 2 resolves each ordinal (the k-th pixel of that
class in block order) to its row and column. Point ids are a random permutation, so an id does not reveal the
stratum to a photo-interpreter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data.rasters import open_raster
from core.errors import ConfigError
from core.evaluation.blocks import map_windows
from core.evaluation.map_identity import MapIdentity, read_map_identity

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SampleDesign:
    """How many reference points to draw per map class.

    Give exactly one of ``per_class`` or ``target_se``.

    Attributes:
        per_class: sample size per class id (every class with mapped pixels needs one).
        target_se: target standard error of overall accuracy (a proportion, e.g. 0.01).
        expected_ua: expected user's accuracy, one value for all classes or per class id (for ``target_se``).
        min_per_class: minimum points of every mapped class (for ``target_se``; 50-100 recommended).
        seed: random seed.
    """

    per_class: Mapping[int, int] | None = None
    target_se: float | None = None
    expected_ua: float | Mapping[int, float] = 0.75
    min_per_class: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.target_se is None):
            raise ConfigError(
                f"sample design with per_class={self.per_class!r} and target_se={self.target_se!r}: "
                "give exactly one of them (sizes per class, or a target SE of overall accuracy)"
            )
        if self.per_class is not None:
            object.__setattr__(self, "per_class", {int(k): int(v) for k, v in self.per_class.items()})
            bad = {k: v for k, v in self.per_class.items() if v < 0}
            if bad:
                raise ConfigError(f"negative sample sizes {bad}; give sizes >= 0 per class")
        if self.target_se is not None and not 0 < self.target_se < 0.5:
            raise ConfigError(
                f"target_se {self.target_se!r} is not a standard error of a proportion; give a value "
                "in (0, 0.5), e.g. 0.01"
            )
        uas = self.expected_ua.values() if isinstance(self.expected_ua, Mapping) else [self.expected_ua]
        if isinstance(self.expected_ua, Mapping):
            object.__setattr__(self, "expected_ua", {int(k): float(v) for k, v in self.expected_ua.items()})
        if any(not 0 < float(u) < 1 for u in uas):
            raise ConfigError(f"expected_ua {self.expected_ua!r} must be in (0, 1); e.g. 0.75")
        if self.min_per_class < 2:
            raise ConfigError(f"min_per_class {self.min_per_class!r} is below 2, too few for a variance; use 50-100")

    def ua_of(self, class_id: int) -> float:
        """Expected user's accuracy of ``class_id``."""
        if isinstance(self.expected_ua, Mapping):
            return float(self.expected_ua.get(int(class_id), 0.75))
        return float(self.expected_ua)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        ua: Any = (
            {str(k): v for k, v in self.expected_ua.items()}
            if isinstance(self.expected_ua, Mapping)
            else self.expected_ua
        )
        return {
            "per_class": None if self.per_class is None else {str(k): v for k, v in self.per_class.items()},
            "target_se": self.target_se,
            "expected_ua": ua,
            "min_per_class": self.min_per_class,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampleDesign:
        """Inverse of :meth:`to_dict` (raises ConfigError on unknown keys)."""
        unknown = set(d) - {"per_class", "target_se", "expected_ua", "min_per_class", "seed"}
        if unknown:
            raise ConfigError(
                f"unknown sample design keys {sorted(unknown)}; expected per_class, target_se, "
                "expected_ua, min_per_class, seed"
            )
        return cls(**dict(d))


def total_sample_size(design: SampleDesign, weights: Mapping[int, float]) -> int:
    """Olofsson et al. (2014) eq. 13: ``ceil((sum_i W_i S_i / target_se)^2)`` for mapped weights ``W_i``."""
    if design.target_se is None:
        raise ConfigError("total_sample_size needs a design with target_se")
    s = sum(w * math.sqrt(design.ua_of(c) * (1 - design.ua_of(c))) for c, w in weights.items())
    return int(math.ceil((s / design.target_se) ** 2 - 1e-9))


def _largest_remainder(quota: dict[int, float], total: int) -> dict[int, int]:
    base = {c: int(math.floor(q)) for c, q in quota.items()}
    left = total - sum(base.values())
    for c in sorted(quota, key=lambda c: (-(quota[c] - base[c]), c))[: max(left, 0)]:
        base[c] += 1
    return base


def min_then_proportional(n: int, weights: Mapping[int, float], min_per_class: int) -> dict[int, int]:
    """Split ``n`` points: each class at least ``min_per_class``, the rest proportional to ``weights``.

    Classes whose proportional share would be below the minimum get the minimum; the others share what is left in
    proportion to their weights (repeated until stable). When ``n`` cannot give every class its minimum, every
    class gets the minimum (the total is then above ``n``).
    """
    classes = [c for c, w in weights.items() if w > 0]
    fixed: set[int] = set()
    while True:
        free = [c for c in classes if c not in fixed]
        remaining = n - min_per_class * len(fixed)
        wsum = sum(weights[c] for c in free)
        quota = {c: remaining * weights[c] / wsum for c in free} if free and remaining > 0 else {}
        newly = {c for c in free if quota.get(c, 0.0) < min_per_class}
        if not newly:
            break
        fixed |= newly
    alloc = _largest_remainder(quota, max(remaining, 0)) if quota else {}
    alloc.update({c: min_per_class for c in fixed})
    return {c: alloc.get(c, 0) for c in weights}


def allocate(design: SampleDesign, stratum_pixels: Mapping[int, int]) -> dict[int, int]:
    """Sample size per class id for a map with ``stratum_pixels`` mapped pixels per class.

    Sizes are capped at the class's pixel count (points are distinct pixels); unmapped classes get 0.

    Raises:
        ConfigError: ``per_class`` gives no size for a mapped class.
    """
    pixels = {int(c): int(v) for c, v in stratum_pixels.items()}
    if design.per_class is not None:
        missing = [c for c, v in pixels.items() if v > 0 and c not in design.per_class]
        if missing:
            raise ConfigError(
                f"per_class {dict(design.per_class)} gives no sample size for mapped classes {missing}; "
                "give a size for every class present in the map"
            )
        wanted = {c: int(design.per_class.get(c, 0)) if pixels[c] > 0 else 0 for c in pixels}
    else:
        total = sum(pixels.values())
        weights = {c: v / total for c, v in pixels.items()} if total else {}
        n = total_sample_size(design, weights)
        wanted = min_then_proportional(n, weights, design.min_per_class)
        log.info("target SE %.4g of overall accuracy: n = %d, allocated %s", design.target_se, n, wanted)
    capped = {c: min(v, pixels[c]) for c, v in wanted.items()}
    for c in capped:
        if capped[c] < wanted[c]:
            log.warning("class %d has only %d pixels; sampling all of them instead of %d", c, pixels[c], wanted[c])
    return capped


@dataclass(frozen=True)
class SamplePoint:
    """One reference point: the centre of pixel (``row``, ``col``).

    Attributes:
        id: point id (1..n, a random permutation).
        row, col: pixel indexes in the map.
        x, y: pixel centre in the map's CRS (pixel units, col/row + 0.5, when not georeferenced).
        lon, lat: pixel centre in EPSG:4326 degrees (``None`` when not georeferenced).
        map_class: the map class (stratum) of the pixel.
    """

    id: int
    row: int
    col: int
    x: float
    y: float
    lon: float | None
    lat: float | None
    map_class: int


@dataclass(frozen=True)
class ReferenceSample:
    """A drawn sample and what it was drawn from.

    Attributes:
        map: identity of the map (path, grid, CRS, classes): labels are refused for any other map.
        design: the design.
        stratum_pixels: mapped pixels per class id when drawn.
        allocation: sample size per class id.
        points: the points, by id.
    """

    map: MapIdentity
    design: SampleDesign
    stratum_pixels: dict[int, int]
    allocation: dict[int, int]
    points: tuple[SamplePoint, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {
            "kind": "stratified_random_sample",
            "map": self.map.to_dict(),
            "design": self.design.to_dict(),
            "stratum_pixels": {str(k): v for k, v in self.stratum_pixels.items()},
            "allocation": {str(k): v for k, v in self.allocation.items()},
            "points": [vars(p).copy() for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceSample:
        """Inverse of :meth:`to_dict`."""
        return cls(
            map=MapIdentity.from_dict(d["map"]),
            design=SampleDesign.from_dict(d["design"]),
            stratum_pixels={int(k): int(v) for k, v in d["stratum_pixels"].items()},
            allocation={int(k): int(v) for k, v in d["allocation"].items()},
            points=tuple(SamplePoint(**p) for p in d["points"]),
        )


def count_classes(map_path: str, progress: Progress | None = None) -> np.ndarray:
    """Pass 1: pixels per value 0..255 of a uint8 map, block by block (``(256,)`` int64)."""
    counts = np.zeros(256, dtype=np.int64)
    with open_raster(map_path) as src:
        windows = map_windows(src)
        for k, win in enumerate(windows):
            counts += np.bincount(src.read(1, window=win).ravel(), minlength=256)
            if progress:
                progress("count", k + 1, len(windows))
    return counts


def resolve_ordinals(
    map_path: str, chosen: Mapping[int, np.ndarray], progress: Progress | None = None
) -> list[tuple[int, int, int]]:
    """Pass 2: ``(row, col, class)`` of the chosen ordinals (k-th pixel of a class in block order) per class."""
    offsets = {c: 0 for c in chosen}
    found: list[tuple[int, int, int]] = []
    with open_raster(map_path) as src:
        windows = map_windows(src)
        for k, win in enumerate(windows):
            flat = src.read(1, window=win).ravel()
            per_value = np.bincount(flat, minlength=256)
            for c, ords in chosen.items():
                cnt, off = int(per_value[c]), offsets[c]
                lo, hi = np.searchsorted(ords, [off, off + cnt])
                if hi > lo:
                    pos = np.flatnonzero(flat == c)[ords[lo:hi] - off]
                    rows, cols = np.divmod(pos, int(win.width))
                    found.extend((int(r + win.row_off), int(q + win.col_off), int(c)) for r, q in zip(rows, cols))
                offsets[c] = off + cnt
            if progress:
                progress("resolve", k + 1, len(windows))
    return found


def _centres(ident: MapIdentity, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
    a, b, c, d, e, f = ident.transform
    if not ident.georeferenced:
        return cols + 0.5, rows + 0.5, np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    x = a * (cols + 0.5) + b * (rows + 0.5) + c
    y = d * (cols + 0.5) + e * (rows + 0.5) + f
    from pyproj import CRS, Transformer

    to_ll = Transformer.from_crs(CRS.from_wkt(str(ident.crs_wkt)), CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_ll.transform(x, y)
    return x, y, np.asarray(lon), np.asarray(lat)


def draw_stratified_sample(map_path: str, design: SampleDesign, progress: Progress | None = None) -> ReferenceSample:
    """Draw a stratified random sample of pixel centres from a class map (see module docstring).

    Args:
        map_path: uint8 class map with nodata 0 and a ``CLASSES`` tag.
        design: sizes per class or a target SE; its ``seed`` makes the draw reproducible.
        progress: optional ``callable(phase, done, total)`` (phases ``count``, ``resolve``).

    Returns:
        The sample, points ordered by id, with the map's identity.
    """
    ident = read_map_identity(map_path)
    counts = count_classes(ident.path, progress)
    pixels = {c: int(counts[c]) for c in ident.class_ids}
    alloc = allocate(design, pixels)
    rng = np.random.default_rng(design.seed)
    chosen = {c: np.sort(rng.choice(pixels[c], size=n, replace=False)) for c, n in alloc.items() if n > 0}
    found = sorted(resolve_ordinals(ident.path, chosen, progress), key=lambda t: (t[2], t[0], t[1]))
    rows = np.array([t[0] for t in found], dtype=np.int64)
    cols = np.array([t[1] for t in found], dtype=np.int64)
    x, y, lon, lat = _centres(ident, rows, cols)
    ids = rng.permutation(len(found)) + 1
    points = sorted(
        (
            SamplePoint(
                id=int(ids[k]),
                row=int(rows[k]),
                col=int(cols[k]),
                x=float(x[k]),
                y=float(y[k]),
                lon=None if np.isnan(lon[k]) else float(lon[k]),
                lat=None if np.isnan(lat[k]) else float(lat[k]),
                map_class=found[k][2],
            )
            for k in range(len(found))
        ),
        key=lambda p: p.id,
    )
    log.info("drew %d sample points from %s: %s", len(points), ident.path, alloc)
    return ReferenceSample(map=ident, design=design, stratum_pixels=pixels, allocation=alloc, points=tuple(points))
