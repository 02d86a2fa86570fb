"""Scene description: what a registered scene is, independent of where it is stored.

A *scene* is one place. It has one or more *modalities* (e.g. ``hsi`` and ``rgb``), each with its own pixel
grid (size, transform) in the scene's CRS, and one or more *acquisitions* (dates). Each acquisition names, for
every modality, the raster files whose bands are stacked in order, and optionally a label raster on the
*label grid* (the grid of ``label_modality``).

These are frozen value objects that round-trip through JSON (``to_dict`` / ``from_dict``); they hold paths, never
open files. The registry (``core.data.catalog``) builds them after validating the files; the database stores them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Transform = tuple[float, float, float, float, float, float]
"""An affine geotransform as rasterio's ``Affine[:6]``: (a, b, c, d, e, f); x = a*col + b*row + c, y = d*col + e*row + f."""


@dataclass(frozen=True)
class ClassInfo:
    """One land-cover class. ``id`` is the value in label rasters (0 is reserved for 'unlabelled')."""

    id: int
    name: str
    color: str  # "#rrggbb"

    def __post_init__(self) -> None:
        if self.id <= 0 or self.id > 255:
            raise ValueError(f"class id {self.id} for {self.name!r} is out of range: use 1..255 (0 means unlabelled)")
        if not (isinstance(self.color, str) and len(self.color) == 7 and self.color.startswith("#")):
            raise ValueError(f"class colour {self.color!r} for {self.name!r} is not '#rrggbb'")


@dataclass(frozen=True)
class FileFingerprint:
    """What a file looked like at registration: size in bytes, mtime (ns) and a sha256 of its head and tail."""

    path: str
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True)
class Modality:
    """One imaging modality and its pixel grid.

    Attributes:
        name: short id such as ``"s2"``, ``"hsi"``, ``"rgb"``.
        width, height: grid size in pixels (cols, rows).
        transform: affine of the grid in the scene CRS (pixel coordinates when the scene is not georeferenced).
        band_count: bands after stacking all files of the modality in order.
        dtype: numpy dtype name of the stacked bands.
        nodata: per-band nodata value (``None`` where the band has none; NaN is always treated as nodata for floats).
        band_names: optional names, one per band.
    """

    name: str
    width: int
    height: int
    transform: Transform
    band_count: int
    dtype: str
    nodata: tuple[float | None, ...]
    band_names: tuple[str, ...] = ()

    @property
    def resolution(self) -> float:
        """Pixel size along x in scene units (metres for projected CRSs)."""
        return abs(self.transform[0])


@dataclass(frozen=True)
class Acquisition:
    """The files of one date. ``files`` maps modality name to its raster paths (bands stacked in that order)."""

    date: str | None
    files: dict[str, tuple[str, ...]]
    labels: str | None = None

    def __hash__(self) -> int:  # dicts are not hashable; files are fixed after registration
        return hash((self.date, tuple(sorted(self.files.items())), self.labels))


@dataclass(frozen=True)
class Scene:
    """A registered scene. ``crs_wkt`` is ``None`` exactly when ``georeferenced`` is False."""

    name: str
    georeferenced: bool
    crs_wkt: str | None
    modalities: tuple[Modality, ...]
    acquisitions: tuple[Acquisition, ...]
    classes: tuple[ClassInfo, ...] = ()
    label_modality: str | None = None
    footprint_wgs84: dict[str, Any] | None = None  # GeoJSON Polygon in EPSG:4326, None if not georeferenced
    fingerprints: tuple[FileFingerprint, ...] = field(default=())
    description: str = ""
    id: int | None = None

    def modality(self, name: str) -> Modality:
        """The modality called ``name``; raises KeyError naming the ones that exist."""
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"scene {self.name!r} has no modality {name!r}; it has {[m.name for m in self.modalities]}")

    @property
    def primary(self) -> Modality:
        """The label grid's modality, or the first modality when there are no labels."""
        return self.modality(self.label_modality) if self.label_modality else self.modalities[0]

    @property
    def dates(self) -> tuple[str | None, ...]:
        return tuple(a.date for a in self.acquisitions)

    def acquisition(self, date: str | None = None) -> Acquisition:
        """The acquisition of ``date`` (the first one when ``date`` is None)."""
        if date is None:
            return self.acquisitions[0]
        for a in self.acquisitions:
            if a.date == date:
                return a
        raise KeyError(f"scene {self.name!r} has no acquisition dated {date!r}; dates: {list(self.dates)}")

    @property
    def has_labels(self) -> bool:
        return any(a.labels for a in self.acquisitions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for a in d["acquisitions"]:
            a["files"] = {k: list(v) for k, v in a["files"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(
            name=d["name"],
            georeferenced=d["georeferenced"],
            crs_wkt=d.get("crs_wkt"),
            modalities=tuple(
                Modality(
                    name=m["name"],
                    width=m["width"],
                    height=m["height"],
                    transform=tuple(m["transform"]),
                    band_count=m["band_count"],
                    dtype=m["dtype"],
                    nodata=tuple(m["nodata"]),
                    band_names=tuple(m.get("band_names", ())),
                )
                for m in d["modalities"]
            ),
            acquisitions=tuple(
                Acquisition(
                    date=a.get("date"), files={k: tuple(v) for k, v in a["files"].items()}, labels=a.get("labels")
                )
                for a in d["acquisitions"]
            ),
            classes=tuple(ClassInfo(**c) for c in d.get("classes", ())),
            label_modality=d.get("label_modality"),
            footprint_wgs84=d.get("footprint_wgs84"),
            fingerprints=tuple(FileFingerprint(**f) for f in d.get("fingerprints", ())),
            description=d.get("description", ""),
            id=d.get("id"),
        )
