"""STAC out: an Item beside every prediction COG, and a run's Items gathered in a local static Catalog.

Item ``<name>.json`` beside ``<name>.tif`` (STAC 1.1.0, written with pystac):

- ``geometry`` / ``bbox``: the map's outline in EPSG:4326 (lon, lat), densified so a projected grid's curved
  edges are followed; ``datetime``: the *acquisition* the prediction was made from (not the run time, which is
  ``created``).
- projection extension v2.0.0: ``proj:code`` (``EPSG:xxxx``, or ``proj:wkt2`` when the CRS has no EPSG code),
  ``proj:shape`` [rows, cols], ``proj:transform`` (rasterio's affine, 6 numbers), ``proj:bbox`` (map CRS).
- assets: ``classification`` (the class-map COG; classification extension v2.0.0 ``classification:classes``
  with value = class id, name, ``color_hint`` = colour without "#"; nodata 0 is ``nodata: true``), optionally
  ``confidence`` (uint8 percent, nodata 255) and the ``.qml`` styles (role ``style``).
- the model run: properties ``workbench:run_id``, ``workbench:model``, ``workbench:scene``, ``workbench:kind``, and
  a ``derived_from`` link to the model bundle's ``meta.json`` (when the bundle path is known).

Validation offline: pystac's :class:`~pystac.validation.JsonSchemaSTACValidator` fetches every schema from the
internet except STAC core's (item, catalog, collection and their parts) and GeoJSON's, which pystac ships.
:func:`validate_offline` validates against exactly those shipped schemas and never fetches: remote extension
schemas are skipped (their fields are checked by loading them with pystac's extension classes instead; see the
tests), and a core schema that is not shipped raises instead of going online.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from core.export.classes import as_classes
from core.export.errors import StacError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
FOOTPRINT_POINTS_PER_EDGE = 16
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
VECTOR_MEDIA_TYPES = {"gpkg": "application/geopackage+sqlite3", "geojson": "application/geo+json"}


@dataclass(frozen=True)
class RunInfo:
    """The model run a prediction came from.

    Attributes:
        run_id: the run's id in the run database (None when unknown).
        model: path of the model bundle folder (None when unknown).
        scene: the scene's name.
        kind: the job kind (``"predict"``).
        created: when the run finished (UTC); None: now.
    """

    run_id: int | None = None
    model: str | None = None
    scene: str | None = None
    kind: str = "predict"
    created: dt.datetime | None = None


def footprint_wgs84(crs: Any, bounds: Sequence[float]) -> dict[str, Any]:
    """Densified outline of ``bounds`` (xmin, ymin, xmax, ymax in ``crs``) as a GeoJSON Polygon in EPSG:4326."""
    from pyproj import Transformer

    xmin, ymin, xmax, ymax = bounds
    t = np.linspace(0.0, 1.0, FOOTPRINT_POINTS_PER_EDGE, endpoint=False)
    xs = np.concatenate(
        [xmin + t * (xmax - xmin), np.full_like(t, xmax), xmax - t * (xmax - xmin), np.full_like(t, xmin)]
    )
    ys = np.concatenate(
        [np.full_like(t, ymin), ymin + t * (ymax - ymin), np.full_like(t, ymax), ymax - t * (ymax - ymin)]
    )
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def _as_datetime(value: str | dt.date | dt.datetime | None) -> dt.datetime:
    if value is None:
        raise StacError(
            "a STAC Item needs the acquisition datetime of the imagery the prediction was made from; "
            "pass the scene acquisition's date (e.g. '2021-06-19')"
        )
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            out = dt.datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise StacError(
                f"datetime {value!r} is not ISO 8601 (e.g. '2021-06-19' or '2021-06-19T10:30:00Z')"
            ) from exc
    return out if out.tzinfo else out.replace(tzinfo=dt.UTC)


def _grid(path: Path) -> dict[str, Any]:
    with rasterio.open(path) as src:
        if src.crs is None:
            raise StacError(f"{path} has no CRS; a STAC Item needs a georeferenced map (geometry in EPSG:4326)")
        return {
            "crs": src.crs,
            "bounds": tuple(src.bounds),
            "shape": [src.height, src.width],
            "transform": list(src.transform)[:6],
            "epsg": src.crs.to_epsg(),
            "wkt": src.crs.to_wkt(),
        }


def _class_asset(item: Any, key: str, path: Path, classes: Sequence[Any], out_dir: Path) -> None:
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension

    asset = pystac.Asset(
        href=_rel(path, out_dir),
        media_type=COG_MEDIA_TYPE,
        roles=["data"],
        title="land-cover class map",
        description="uint8 class ids; 0 = no data",
    )
    item.add_asset(key, asset)
    ext = ClassificationExtension.ext(asset, add_if_missing=True)
    entries = [Classification.create(value=0, name="nodata", description="no prediction", nodata=True)]
    entries += [
        Classification.create(value=c.id, name=c.name, description=c.name, color_hint=c.color[1:].upper())
        for c in as_classes(classes)
    ]
    ext.classes = entries


def _rel(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())


def _add_run(item: Any, run: RunInfo, out_dir: Path) -> None:
    import pystac

    props = {
        "workbench:kind": run.kind,
        "workbench:run_id": run.run_id,
        "workbench:model": run.model,
        "workbench:scene": run.scene,
    }
    item.properties.update({k: v for k, v in props.items() if v is not None})
    item.common_metadata.created = run.created or dt.datetime.now(dt.UTC)
    if run.model:
        meta = Path(run.model) / "meta.json"
        item.add_link(
            pystac.Link(
                rel="derived_from",
                target=_rel(meta, out_dir),
                media_type="application/json",
                title=f"model bundle of run {run.run_id}",
            )
        )


def write_stac_item(
    cog_path: str | Path,
    classes: Sequence[Any] | None,
    datetime: str | dt.date | dt.datetime,
    run: RunInfo | None = None,
    confidence_path: str | Path | None = None,
    out_path: str | Path | None = None,
    item_id: str | None = None,
    vectors: Sequence[str | Path] = (),
) -> Path:
    """Write a STAC Item describing a prediction COG (and its confidence COG) beside it.

    Args:
        cog_path: the class-map COG (or a confidence COG alone, with ``classes=None``).
        classes: ``[{"id", "name", "color"}]``; None reads the COG's ``CLASSES`` tag (an empty tag: no
            classification extension, e.g. for a lone confidence COG).
        datetime: the acquisition date/time of the imagery predicted (naive values are taken as UTC).
        run: the model run (ids, bundle path, scene), or None.
        confidence_path: the confidence COG to add as asset ``confidence``.
        out_path: the Item file; default ``<cog name>.json`` beside the COG.
        item_id: default: the COG's file stem.
        vectors: polygon files of the map (``.gpkg`` / ``.geojson`` from :func:`core.export.vectorize.vectorize`),
            added as assets ``vector_gpkg`` / ``vector_geojson`` (role ``data``).

    Returns:
        The Item file written. Raises :class:`StacError` (no CRS, no datetime).
    """
    from core.data.cog import read_classes

    cog = Path(cog_path)
    out = Path(out_path) if out_path is not None else cog.with_suffix(".json")
    item = _new_item(cog, datetime, item_id)
    classes = read_classes(cog) if classes is None else classes
    _add_assets(item, cog, classes, confidence_path, vectors, out.parent)
    if run is not None:
        _add_run(item, run, out.parent)
    item.set_self_href(str(out.resolve()))
    out.parent.mkdir(parents=True, exist_ok=True)
    item.save_object(include_self_link=False)
    log.info("wrote STAC item %s", out)
    return out


def _new_item(cog: Path, datetime: str | dt.date | dt.datetime, item_id: str | None) -> Any:
    """An Item with the COG's footprint and bbox in EPSG:4326, its datetime and the projection extension."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    grid = _grid(cog)
    geom = footprint_wgs84(grid["crs"], grid["bounds"])
    lons, lats = zip(*geom["coordinates"][0])
    item = pystac.Item(
        id=item_id or cog.stem,
        geometry=geom,
        bbox=[min(lons), min(lats), max(lons), max(lats)],
        datetime=_as_datetime(datetime),
        properties={},
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=f"EPSG:{grid['epsg']}" if grid["epsg"] else None,
        wkt2=None if grid["epsg"] else grid["wkt"],
        shape=grid["shape"],
        transform=grid["transform"],
        bbox=list(grid["bounds"]),
    )
    return item


def _add_assets(
    item: Any,
    cog: Path,
    classes: Sequence[Any] | None,
    confidence_path: str | Path | None,
    vectors: Sequence[str | Path],
    folder: Path,
) -> None:
    """The map (with its classes), the confidence COG, the QGIS styles and the polygon files as assets."""
    import pystac

    if classes:
        _class_asset(item, "classification", cog, classes, folder)
    else:
        item.add_asset("data", pystac.Asset(href=_rel(cog, folder), media_type=COG_MEDIA_TYPE, roles=["data"]))
    if confidence_path is not None:
        item.add_asset(
            "confidence",
            pystac.Asset(
                href=_rel(Path(confidence_path), folder),
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                title="confidence",
                description="max class probability in percent (uint8 0-100); 255 = no data",
            ),
        )
    for key, p in (
        ("style", cog.with_suffix(".qml")),
        ("confidence_style", Path(confidence_path).with_suffix(".qml") if confidence_path else None),
    ):
        if p is not None and p.exists():
            item.add_asset(
                key,
                pystac.Asset(href=_rel(p, folder), media_type="text/xml", roles=["style"], title="QGIS layer style"),
            )
    for v in map(Path, vectors):
        kind = "geojson" if v.suffix.lower() in (".geojson", ".json") else "gpkg"
        item.add_asset(
            f"vector_{kind}",
            pystac.Asset(
                href=_rel(v, folder),
                media_type=VECTOR_MEDIA_TYPES[kind],
                roles=["data"],
                title=f"class polygons ({kind})",
            ),
        )


def write_run_catalog(
    items: Sequence[str | Path],
    folder: str | Path,
    catalog_id: str = "run",
    description: str = "Land-cover predictions of one run",
    validate: bool = True,
) -> Path:
    """Gather a run's Item files in a static Catalog ``<folder>/catalog.json`` (relative links, no rewrite).

    The Items stay where they are (beside their COGs); each gets ``root`` / ``parent`` links to the catalogue
    and the catalogue an ``item`` link to each. With ``validate`` the catalogue and every Item are validated
    offline (:func:`validate_offline`).

    Returns:
        The catalogue file. Raises :class:`StacError` for a missing or invalid Item.
    """
    import pystac

    root = Path(folder)
    cat = pystac.Catalog(id=catalog_id, description=description)
    cat.set_self_href(str((root / "catalog.json").resolve()))
    for p in items:
        if not Path(p).exists():
            raise StacError(f"STAC item {p} does not exist; write it with write_stac_item first")
        item = pystac.Item.from_file(str(Path(p).resolve()))
        cat.add_item(item)
        item.set_self_href(str(Path(p).resolve()))
    root.mkdir(parents=True, exist_ok=True)
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    if validate:
        validate_offline(root / "catalog.json")
    log.info("wrote STAC catalogue %s with %d items", root / "catalog.json", len(items))
    return root / "catalog.json"


def _offline_validator() -> Any:
    """pystac's JSON-schema validator restricted to the schemas pystac ships (STAC core 1.1.0 and GeoJSON)."""
    from pystac.validation import JsonSchemaSTACValidator

    class OfflineValidator(JsonSchemaSTACValidator):  # type: ignore[misc]
        def _get_schema(self, schema_uri: str) -> dict[str, Any]:
            if schema_uri not in self.schema_cache:
                raise StacError(
                    f"schema {schema_uri} is not shipped with pystac and this machine validates offline; "
                    "only STAC core and GeoJSON schemas are checked"
                )
            return self.schema_cache[schema_uri]

        def validate_extension(
            self,
            stac_dict: dict[str, Any],
            stac_object_type: Any,
            stac_version: str,
            extension_id: str,
            href: str | None = None,
        ) -> str | None:
            log.debug("offline: extension schema %s not fetched for %s", extension_id, href)
            return None

    return OfflineValidator()


def validate_offline(path: str | Path) -> list[str]:
    """Validate a STAC Item, Collection or Catalog file (a Catalog with all its children and Items) offline.

    Checks every object against the STAC core 1.1.0 JSON schemas that pystac ships (and GeoJSON's for an Item's
    geometry); extension schemas (projection, classification, eo, ...) are not fetched.

    Returns:
        The files validated. Raises :class:`StacError` naming the object and the first schema error.
    """
    import pystac
    from pystac.errors import STACValidationError
    from pystac.validation import validate_dict

    validator = _offline_validator()
    obj = pystac.read_file(str(Path(path).resolve()))
    objects = [obj] + (list(obj.get_all_items()) + list(obj.get_children()) if isinstance(obj, pystac.Catalog) else [])
    checked = []
    for o in objects:
        href = o.get_self_href()
        try:
            validate_dict(o.to_dict(include_self_link=False), href=href, validator=validator)
        except STACValidationError as exc:
            raise StacError(f"STAC object {o.id!r} ({href}) is not valid STAC: {exc}") from exc
        checked.append(str(href))
    return checked
