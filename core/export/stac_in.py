"""STAC in: a local STAC Item or Collection -> a registration request (:class:`core.data.catalog.SceneSpec`).

Offline only: asset hrefs must be local paths (relative to the STAC file) or ``file://`` URIs; ``http``,
``https``, ``s3``, ``gs`` and other remote schemes raise :class:`~core.export.errors.RemoteHrefError`.

Mapping:

- *Acquisitions*: an Item is one acquisition dated by its ``datetime`` (or ``start_datetime``), as
  ``YYYY-MM-DD``; a Collection gives one acquisition per Item it links (``rel="item"``, local files), in date order.
- *Imagery assets*: assets with role ``data`` (or without roles) that describe bands (``eo:bands`` or STAC 1.1
  ``bands``), or any GeoTIFF asset that is not a label. Each asset is one raster file; its modality is the asset's
  ``workbench:modality`` when given, else assets are grouped by pixel grid (a 10 m and a 20 m group become two
  modalities). A group is named after the Item's ``constellation``/``platform`` (``s2`` for Sentinel-2,
  ``landsat`` for Landsat, else ``image``), with ``_<res>m`` added when there are several groups. Within a
  modality the files are stacked in spectral order: ``center_wavelength`` of the first band when given, else the
  position of the band's ``common_name`` in :data:`COMMON_NAME_ORDER`, else the asset order of the file.
- *Labels*: the asset with role ``labels`` (or key ``labels``): a raster becomes ``labels``, a vector file
  ``label_vector`` with ``label_field`` from ``label:properties``. Classes come from that asset's
  ``classification:classes`` (value, name, ``color_hint``; nodata entries skipped), else from ``label:classes``.
- *CRS*: a file without a CRS gets the one of ``proj:code`` / ``proj:epsg`` / ``proj:wkt2`` (asset, else Item)
  through a small VRT written into ``vrt_dir`` (the file itself is not touched); with neither, registration
  would fail, so :func:`scene_spec_from_stac` raises first. A file whose CRS differs from its declared one is
  refused.

:func:`validate_scene_spec` then runs exactly the registration's validation (:func:`core.data.catalog.register_scene`)
without a database, and :func:`register_stac` registers into a store.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import rasterio

from core.errors import SceneNotFoundError
from core.export.errors import RemoteHrefError, StacError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
COMMON_NAME_ORDER = (
    "pan",
    "coastal",
    "blue",
    "green",
    "green05",
    "yellow",
    "red",
    "rededge",
    "rededge071",
    "rededge075",
    "rededge078",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
    "lwir",
    "lwir11",
    "lwir12",
)
"""Common names of the STAC eo extension in order of wavelength (``rededge`` and ``nir`` before their variants)."""
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az", "abfs", "ftp", "ssh")


def local_path(href: str, base: Path) -> Path:
    """An asset href as a local path: relative hrefs against ``base`` (the STAC file's folder), ``file://`` URIs.

    Raises:
        RemoteHrefError: a remote scheme (http, https, s3, ...).
    """
    parsed = urlparse(href)
    if parsed.scheme in REMOTE_SCHEMES or (parsed.scheme and len(parsed.scheme) > 1 and parsed.scheme != "file"):
        raise RemoteHrefError(
            f"asset href {href!r} is remote ({parsed.scheme}://); this workbench reads local files "
            "only: download the file and point the asset at its local path or a file:// URI"
        )
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    p = Path(href).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StacError(f"{path} cannot be read as JSON ({exc}); give a STAC Item or Collection file") from exc
    if d.get("type") not in ("Feature", "Collection"):
        raise StacError(f"{path} has type {d.get('type')!r}; expected a STAC Item ('Feature') or a 'Collection'")
    return d


def _date(item: dict[str, Any], path: Path) -> str:
    props = item.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if not value:
        raise StacError(
            f"STAC item {item.get('id')!r} ({path}) has neither datetime nor start_datetime; give the "
            "acquisition time so the scene gets a dated acquisition"
        )
    return str(value)[:10]


def _bands(asset: dict[str, Any]) -> list[dict[str, Any]]:
    return list(asset.get("eo:bands") or asset.get("bands") or [])


def _is_label(key: str, asset: dict[str, Any]) -> bool:
    roles = [r.lower() for r in asset.get("roles", [])]
    return "labels" in roles or "label" in roles or key.lower() in ("labels", "label")


def _is_imagery(key: str, asset: dict[str, Any]) -> bool:
    if _is_label(key, asset):
        return False
    roles = asset.get("roles")
    if roles and "data" not in roles:
        return False
    href = str(asset.get("href", "")).lower()
    return bool(_bands(asset)) or href.endswith(RASTER_SUFFIXES)


def _spectral_key(asset: dict[str, Any], index: int) -> tuple[float, int]:
    bands = _bands(asset)
    first = bands[0] if bands else {}
    wl = first.get("center_wavelength", first.get("eo:center_wavelength"))
    if wl is not None:
        return float(wl), index
    name = first.get("common_name", first.get("eo:common_name"))
    if name in COMMON_NAME_ORDER:
        return 100.0 + COMMON_NAME_ORDER.index(name), index
    return 1000.0, index


def _declared_crs(asset: dict[str, Any], item: dict[str, Any]) -> str | None:
    for src in (asset, item.get("properties", {})):
        if src.get("proj:code"):
            return str(src["proj:code"])
        if src.get("proj:epsg"):
            return f"EPSG:{int(src['proj:epsg'])}"
        if src.get("proj:wkt2"):
            return str(src["proj:wkt2"])
    return None


def _vrt_with_crs(path: Path, crs: str, transform: Any, vrt_dir: Path) -> Path:
    """A VRT over ``path`` that adds ``crs`` (and ``transform``); the source file is not modified."""
    from xml.sax.saxutils import escape

    from rasterio.crs import CRS
    from rasterio.dtypes import _gdal_typename

    with rasterio.open(path) as src:
        t = transform
        bands = []
        for b in range(1, src.count + 1):
            nodata = "" if src.nodatavals[b - 1] is None else f"<NoDataValue>{src.nodatavals[b - 1]!r}</NoDataValue>"
            desc = escape(src.descriptions[b - 1] or "")
            bands.append(
                f'  <VRTRasterBand dataType="{_gdal_typename(src.dtypes[b - 1])}" band="{b}">'
                f"<Description>{desc}</Description>{nodata}<SimpleSource>"
                f'<SourceFilename relativeToVRT="0">{escape(str(path.resolve()))}</SourceFilename>'
                f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
            )
        xml = (
            f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">\n'
            f"  <SRS>{escape(CRS.from_user_input(crs).to_wkt())}</SRS>\n"
            f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>\n"
            + "\n".join(bands)
            + "\n</VRTDataset>\n"
        )
    vrt_dir.mkdir(parents=True, exist_ok=True)
    out = vrt_dir / f"{path.stem}_crs.vrt"
    out.write_text(xml)
    log.info("%s has no CRS: registering it through %s with %s", path, out, crs)
    return out


def _raster_file(key: str, asset: dict[str, Any], item: dict[str, Any], base: Path, vrt_dir: Path) -> Path:
    """The asset's file, checked to exist and to have a CRS (or given one through a VRT)."""
    from affine import Affine
    from rasterio.crs import CRS

    path = local_path(str(asset.get("href", "")), base)
    if not path.exists():
        raise StacError(
            f"asset {key!r} of STAC item {item.get('id')!r} points at {path}, which does not exist; fix "
            "the href (relative hrefs are taken from the STAC file's folder)"
        )
    declared = _declared_crs(asset, item)
    with rasterio.open(path) as src:
        crs, transform = src.crs, src.transform
    if crs is None and declared is None:
        raise StacError(
            f"asset {key!r} ({path}) has no CRS and STAC item {item.get('id')!r} declares none (no "
            "proj:code, proj:epsg or proj:wkt2); add proj:code (e.g. 'EPSG:32633') to the item or asset, "
            "or assign the file a CRS (gdal_edit.py -a_srs)"
        )
    if crs is None:
        pt = asset.get("proj:transform") or item.get("properties", {}).get("proj:transform")
        return _vrt_with_crs(path, declared, Affine(*pt[:6]) if pt else transform, vrt_dir)  # type: ignore[arg-type]
    if (
        declared is not None
        and CRS.from_user_input(declared) != crs
        and crs.to_epsg() != CRS.from_user_input(declared).to_epsg()
    ):
        raise StacError(
            f"asset {key!r} ({path}) is in {crs} but STAC item {item.get('id')!r} declares {declared}; "
            "fix proj:code or the file's CRS"
        )
    return path


def _platform_name(item: dict[str, Any]) -> str:
    props = item.get("properties", {})
    text = f"{props.get('constellation', '')} {props.get('platform', '')}".lower()
    if "sentinel-2" in text or "sentinel2" in text:
        return "s2"
    if "landsat" in text:
        return "landsat"
    return "image"


def _modalities(item: dict[str, Any], files: list[tuple[str, dict[str, Any], Path]]) -> dict[str, list[str]]:
    """Imagery files grouped into modalities (finest grid first), each stacked in spectral order."""
    groups: dict[Any, list[tuple[tuple[float, int], str, dict[str, Any], Path]]] = {}
    named: dict[str, list[tuple[tuple[float, int], str, dict[str, Any], Path]]] = {}
    for i, (key, asset, path) in enumerate(files):
        entry = (_spectral_key(asset, i), key, asset, path)
        if asset.get("workbench:modality"):
            named.setdefault(str(asset["workbench:modality"]), []).append(entry)
            continue
        with rasterio.open(path) as src:
            grid = (src.width, src.height, tuple(round(v, 6) for v in tuple(src.transform)[:6]))
        groups.setdefault(grid, []).append(entry)
    base = _platform_name(item)
    ordered = sorted(groups.items(), key=lambda kv: abs(kv[0][2][0]))
    for grid, entries in ordered:
        name = base if len(ordered) == 1 else f"{base}_{abs(grid[2][0]):g}m"
        named[re.sub(r"[^A-Za-z0-9_]", "_", name)] = entries
    return {m: [str(p) for _, _, _, p in sorted(entries, key=lambda e: e[0])] for m, entries in named.items()}


def _label_classes(asset: dict[str, Any], item: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in asset.get("classification:classes") or []:
        if c.get("nodata") or int(c.get("value", 0)) == 0:
            continue
        entry = {"id": int(c["value"]), "name": str(c.get("name") or c.get("description") or c["value"])}
        if c.get("color_hint"):
            entry["color"] = "#" + str(c["color_hint"]).lower()
        out.append(entry)
    if out:
        return out
    for group in asset.get("label:classes") or item.get("properties", {}).get("label:classes") or []:
        for v in group.get("classes", []):
            if str(v).isdigit() and int(v) > 0:
                out.append({"id": int(v), "name": str(v)})
    return out


def _labels(item: dict[str, Any], base: Path, vrt_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """(acquisition label fields, classes, label_field) of an item's label asset (empty when it has none)."""
    found = [(k, a) for k, a in item.get("assets", {}).items() if _is_label(k, a)]
    if not found:
        return {}, [], None
    if len(found) > 1:
        raise StacError(f"STAC item {item.get('id')!r} has several label assets {[k for k, _ in found]}; keep one")
    key, asset = found[0]
    href = str(asset.get("href", ""))
    classes = _label_classes(asset, item)
    if href.lower().endswith(VECTOR_SUFFIXES):
        path = local_path(href, base)
        if not path.exists():
            raise StacError(f"label asset {key!r} points at {path}, which does not exist; fix its href")
        fields = asset.get("label:properties") or item.get("properties", {}).get("label:properties") or []
        if not fields:
            raise StacError(
                f"vector label asset {key!r} names no attribute; set label:properties to the field "
                "holding each polygon's class id or name"
            )
        return {"label_vector": str(path)}, classes, str(fields[0])
    return {"labels": str(_raster_file(key, asset, item, base, vrt_dir))}, classes, None


def _acquisition(item: dict[str, Any], path: Path, vrt_dir: Path) -> tuple[dict[str, Any], list[Any], str | None]:
    base = path.resolve().parent
    imagery = [(k, a) for k, a in item.get("assets", {}).items() if _is_imagery(k, a)]
    if not imagery:
        raise StacError(
            f"STAC item {item.get('id')!r} ({path}) has no imagery asset (role 'data' with eo:bands/bands, "
            f"or a GeoTIFF); its assets are {list(item.get('assets', {}))}"
        )
    files = [(k, a, _raster_file(k, a, item, base, vrt_dir)) for k, a in imagery]
    labels, classes, field = _labels(item, base, vrt_dir)
    return {"date": _date(item, path), "files": _modalities(item, files), **labels}, classes, field


def _items(path: Path, d: dict[str, Any]) -> list[tuple[dict[str, Any], Path]]:
    if d["type"] == "Feature":
        return [(d, path)]
    links = [ln for ln in d.get("links", []) if ln.get("rel") == "item"]
    if not links:
        raise StacError(f"STAC collection {d.get('id')!r} ({path}) links no items (rel='item'); add its items")
    out = []
    for ln in links:
        p = local_path(str(ln.get("href", "")), path.resolve().parent)
        if not p.exists():
            raise StacError(f"collection {d.get('id')!r} links item {p}, which does not exist")
        out.append((_read_json(p), p))
    return out


def scene_spec_from_stac(
    path: str | Path, name: str | None = None, vrt_dir: str | Path | None = None, progress: Progress | None = None
) -> Any:
    """Build a :class:`core.data.catalog.SceneSpec` from a local STAC Item or Collection (see the module docstring).

    Args:
        path: the Item or Collection JSON file.
        name: the scene name; default: the Item/Collection id (characters outside ``[A-Za-z0-9_.-]`` -> ``_``).
        vrt_dir: where VRTs adding a declared CRS to CRS-less files go; default: a new temporary folder (give a
            lasting folder, e.g. ``<WORKBENCH_HOME>/stac``, when the scene is registered).
        progress: optional ``callable(phase, done, total)``; phase ``"items"``.

    Returns:
        The SceneSpec (not yet validated against the files: see :func:`validate_scene_spec`).

    Raises:
        StacError: malformed STAC, missing asset files, no datetime, no CRS anywhere, inconsistent items.
        RemoteHrefError: an asset or item href is remote.
    """
    from core.data.catalog import SceneSpec

    p = Path(path)
    d = _read_json(p)
    vdir = Path(vrt_dir) if vrt_dir is not None else Path(tempfile.mkdtemp(prefix="stac_vrt_"))
    acquisitions: list[dict[str, Any]] = []
    classes: list[dict[str, Any]] = []
    field: str | None = None
    items = sorted(_items(p, d), key=lambda ip: _date(ip[0], ip[1]))
    for i, (item, ipath) in enumerate(items):
        acq, cls, fld = _acquisition(item, ipath, vdir)
        acquisitions.append(acq)
        classes = classes or cls
        field = field or fld
        if progress:
            progress("items", i + 1, len(items))
    label_modality = next(iter(acquisitions[0]["files"]))
    raw = {
        "name": re.sub(r"[^A-Za-z0-9_.-]", "_", name or str(d.get("id") or p.stem)).lstrip("._-") or "stac",
        "description": str(
            d.get("description") or d.get("properties", {}).get("description") or f"registered from STAC {p.name}"
        ),
        "classes": classes,
        "label_modality": label_modality,
        "label_field": field,
        "acquisitions": acquisitions,
    }
    try:
        return SceneSpec.model_validate(raw)
    except ValueError as exc:
        raise StacError(f"STAC {p} does not make a valid scene: {exc}") from exc


class _DryRunStore:
    """A scene store that holds nothing: registration validates everything and 'stores' nowhere."""

    def get(self, name: str) -> Any:
        raise SceneNotFoundError(name)

    def add(self, scene: Any) -> Any:
        return scene


def validate_scene_spec(spec: Any, home: str | Path | None = None) -> Any:
    """Run the registration's validation on ``spec`` without a database; returns the Scene it would store.

    This *is* :func:`core.data.catalog.register_scene` (same checks: CRS, grids, extents, label values, vector
    rasterisation) with a store that keeps nothing; rasterised vector labels go to ``<home>/labels`` (default: a
    temporary folder).
    """
    from core.data.catalog import register_scene

    return register_scene(spec, _DryRunStore(), Path(home) if home else Path(tempfile.mkdtemp(prefix="stac_home_")))


def register_stac(path: str | Path, store: Any, home: str | Path, name: str | None = None) -> Any:
    """Register the scene described by a local STAC file into ``store`` (a ``db.scenes.SceneStore``).

    VRTs for CRS-less files are kept in ``<home>/stac/<name>``. Returns the stored Scene.
    """
    from core.data.catalog import register_scene

    vdir = Path(home) / "stac" / (name or Path(path).stem)
    return register_scene(scene_spec_from_stac(path, name=name, vrt_dir=vdir), store, Path(home))
