"""What identifies a class map: its file, pixel grid, CRS and classes.

A reference sample records the identity of the map it was drawn from, so labels or a sample can be refused when
they are brought to a different map (another scene, another grid, or the same grid re-predicted).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterio.errors import NotGeoreferencedWarning

from core.data.cog import read_classes
from core.data.rasters import open_raster
from core.errors import RasterError
from core.evaluation.errors import SampleMismatchError

log = logging.getLogger(__name__)

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class MapIdentity:
    """Identity of a uint8 class map (nodata 0).

    Attributes:
        path: absolute path of the map when the identity was taken.
        width, height: size in pixels (cols, rows).
        crs_wkt: CRS as WKT; ``None`` for a map that is not georeferenced.
        transform: affine ``(a, b, c, d, e, f)`` from pixel (col, row) to CRS coordinates (identity if none).
        class_ids: the declared class ids (1..255), ascending.
        class_names: the names, in ``class_ids`` order.
    """

    path: str
    width: int
    height: int
    crs_wkt: str | None
    transform: Transform
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def georeferenced(self) -> bool:
        """True when the map has a CRS (areas and lon/lat can be computed)."""
        return self.crs_wkt is not None

    def name_of(self, class_id: int) -> str:
        """Name of ``class_id`` (``"class <id>"`` when it is not declared)."""
        lookup = dict(zip(self.class_ids, self.class_names))
        return lookup.get(int(class_id), f"class {int(class_id)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "crs_wkt": self.crs_wkt,
            "transform": list(self.transform),
            "class_ids": list(self.class_ids),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MapIdentity:
        """Inverse of :meth:`to_dict`."""
        return cls(
            path=str(d["path"]),
            width=int(d["width"]),
            height=int(d["height"]),
            crs_wkt=d.get("crs_wkt"),
            transform=tuple(float(v) for v in d["transform"]),  # type: ignore[arg-type]
            class_ids=tuple(int(c) for c in d["class_ids"]),
            class_names=tuple(str(n) for n in d["class_names"]),
        )


def read_map_identity(map_path: str | Path) -> MapIdentity:
    """Identity of the class map at ``map_path`` (no pixel reads).

    Classes come from the map's ``CLASSES`` JSON tag (see ``core.data.cog``).

    Raises:
        RasterReadError / RasterError: the file is missing or not a raster.
        RasterError: the map is not single-band uint8, or declares no classes.
    """
    p = Path(map_path).expanduser().resolve()
    with open_raster(p) as src:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise RasterError(
                f"{str(p)!r} has {src.count} band(s) of {src.dtypes[0]}; a class map is one uint8 band "
                "of class ids (nodata 0); give a prediction written by the workbench"
            )
        crs_wkt = src.crs.to_wkt() if src.crs else None
        transform = tuple(float(v) for v in src.transform[:6])
        width, height = src.width, src.height
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        classes = read_classes(p)
    if not classes:
        raise RasterError(
            f"{str(p)!r} has no 'CLASSES' tag naming its classes; give a prediction written by the "
            "workbench, or write the tag with core.data.cog.write_class_metadata"
        )
    classes = sorted(classes, key=lambda c: int(c["id"]))
    return MapIdentity(
        path=str(p),
        width=width,
        height=height,
        crs_wkt=crs_wkt,
        transform=transform,  # type: ignore[arg-type]  # six numbers (Affine[:6])
        class_ids=tuple(int(c["id"]) for c in classes),
        class_names=tuple(str(c["name"]) for c in classes),
    )


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    from rasterio.crs import CRS

    return bool(CRS.from_wkt(a) == CRS.from_wkt(b))


def check_same_map(recorded: MapIdentity, actual: MapIdentity, what: str = "the sample") -> None:
    """Refuse ``actual`` unless it has the grid, CRS and classes ``recorded`` for ``what``.

    A different path alone only logs a warning (a map may be moved or copied).

    Raises:
        SampleMismatchError: size, CRS, transform or classes differ.
    """
    diffs: list[str] = []
    if (recorded.width, recorded.height) != (actual.width, actual.height):
        diffs.append(f"size {recorded.width}x{recorded.height} vs {actual.width}x{actual.height}")
    if not _same_crs(recorded.crs_wkt, actual.crs_wkt):
        diffs.append("CRS differs")
    if any(abs(a - b) > 1e-9 * max(1.0, abs(a)) for a, b in zip(recorded.transform, actual.transform)):
        diffs.append(f"transform {recorded.transform} vs {actual.transform}")
    if recorded.class_ids != actual.class_ids:
        diffs.append(f"classes {list(recorded.class_ids)} vs {list(actual.class_ids)}")
    if diffs:
        raise SampleMismatchError(
            f"{what} was drawn from map {recorded.path!r}, not from {actual.path!r}: {'; '.join(diffs)}; draw a new "
            "sample from this map, or assess the map the sample was drawn from"
        )
    if recorded.path != actual.path:
        log.warning(
            "%s was drawn from %s; assessing %s, which has the same grid and classes", what, recorded.path, actual.path
        )
