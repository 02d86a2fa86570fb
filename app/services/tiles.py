"""Web-map tiles of a run's rasters (XYZ, 256 px, Web Mercator PNG), rendered on demand with rio-tiler.

The app serves them itself, on its own origin and port (``app/server.py`` mounts :data:`TILE_ROUTE` beside the
pages), so a remote app needs no second port and no extra command. A layer is named by run id + layer name
(:data:`LAYERS`), never by a file path: the server looks the file up in that run's row (or its scene) and refuses
a file outside the workbench's home and data roots, so no other file of the machine can be read through it.

Layers: ``prediction`` (the class map in its colour table, nodata transparent), ``confidence`` (percent, a
colour ramp), ``truth`` (the scene's label raster in the class colours), ``imagery`` (the scene's first image
file as RGB; query ``bands=3,2,1`` and ``stretch=2,98``, percentiles of a decimated read). Rendered tiles are kept
in an in-memory LRU cache keyed by the file's modification time, so a rewritten COG is never served stale.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.data.scene import ClassInfo

log = logging.getLogger(__name__)

TILE_ROUTE = "/tiles/{run_id:int}/{layer}/{z:int}/{x:int}/{y:int}.png"
TILE_SIZE = 256
CACHE_TILES = 1024  # PNGs of 10-150 KB: at most ~150 MB
CONFIDENCE_RAMP = "viridis"
DEFAULT_BANDS = (3, 2, 1)
DEFAULT_STRETCH = (2.0, 98.0)


class TileError(Exception):
    """A tile that cannot be served: ``status`` (HTTP) and a message saying what is wrong and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LayerSource:
    """The file behind a layer and how to draw it: ``style`` is a key of :data:`STYLES`."""

    path: str
    style: str
    palette: tuple[tuple[int, int, int, int, int], ...] = ()  # (class id, r, g, b, a) if the file has no table


@dataclass(frozen=True)
class TileLayerRef:
    """A layer a web map draws as tiles: its URL template, ``[[south, west], [north, east]]`` and highest zoom."""

    url: str
    bounds: list[list[float]]
    max_zoom: int
    show: bool = True  # ticked in the layer control when the map opens


def tile_url(run_id: int, layer: str, version: float = 0.0, **query: str) -> str:
    """The Leaflet URL template (``{z}/{x}/{y}``) of a layer; ``version`` (the file's mtime) busts browser caches."""
    params = "&".join([f"v={version:.0f}", *(f"{k}={v}" for k, v in query.items())])
    return f"/tiles/{run_id}/{layer}/{{z}}/{{x}}/{{y}}.png?{params}"


# --- which file a layer is ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _stores(db_url: str) -> tuple[Any, Any]:
    from db.runs import RunTracker
    from db.scenes import SceneStore

    return RunTracker(db_url), SceneStore(db_url)


def _palette(classes: tuple[ClassInfo, ...]) -> tuple[tuple[int, int, int, int, int], ...]:
    out = []
    for c in classes:
        h = c.color.lstrip("#")
        out.append((c.id, int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255))
    return tuple(out)


def _scene(row: Any, scenes: Any) -> Any:
    from core.errors import SceneNotFoundError

    try:
        return scenes.get((row.config or {}).get("scene", ""))
    except SceneNotFoundError:
        return None


def _artifact(name: str, style: str) -> Callable[[Any, Any], LayerSource | None]:
    def resolve(row: Any, scenes: Any) -> LayerSource | None:
        path = (row.artifacts or {}).get(name)
        if not path:
            return None
        scene = _scene(row, scenes)
        return LayerSource(str(path), style, _palette(scene.classes) if scene is not None else ())

    return resolve


def _truth(row: Any, scenes: Any) -> LayerSource | None:
    scene = _scene(row, scenes)
    if scene is None:
        return None
    cfg = row.config or {}
    split = cfg.get("split") if isinstance(cfg.get("split"), dict) else (cfg.get("tile_job") or {}).get("split")
    test_date = split.get("test_date") if isinstance(split, dict) else None  # the labels the run was scored on
    dated = [a.labels for a in scene.acquisitions if a.labels and test_date and a.date == test_date]
    labels = next(iter(dated), None) or next((a.labels for a in scene.acquisitions if a.labels), None)
    return LayerSource(str(labels), "classes", _palette(scene.classes)) if labels else None


def _imagery(row: Any, scenes: Any) -> LayerSource | None:
    scene = _scene(row, scenes)
    if scene is None:
        return None
    files = scene.acquisition().files.get(scene.primary.name, ())
    return LayerSource(str(files[0]), "rgb") if files else None


LAYERS: dict[str, Callable[[Any, Any], LayerSource | None]] = {
    "prediction": _artifact("prediction", "classes"),
    "confidence": _artifact("confidence", "ramp"),
    "truth": _truth,
    "imagery": _imagery,
}


def _allowed(path: Path, roots: tuple[Path, ...]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(r.resolve()) for r in roots)


def resolve_layer(run_id: int, layer: str) -> LayerSource:
    """The file of ``layer`` of run ``run_id``; :class:`TileError` (404 / 403) when there is none or it may not
    be served (outside the workbench's home and data roots)."""
    from core.errors import WorkbenchError
    from core.settings import get_settings

    if layer not in LAYERS:
        raise TileError(404, f"unknown layer {layer!r}: one of {', '.join(LAYERS)}")
    settings = get_settings()
    tracker, scenes = _stores(settings.db_url)
    try:
        row = tracker.get(run_id)
    except (WorkbenchError, LookupError):
        raise TileError(404, f"run {run_id} does not exist") from None
    source = LAYERS[layer](row, scenes)
    if source is None:
        raise TileError(404, f"run {run_id} has no {layer} layer")
    path = Path(source.path)
    if not _allowed(path, (settings.home, *settings.data_roots)):
        raise TileError(403, f"the {layer} file of run {run_id} is outside the workbench's home and data roots")
    if not path.is_file():
        raise TileError(
            404, f"the {layer} file of run {run_id} is missing ({path}): it was moved or deleted; run it again"
        )
    return source


# --- rendering ------------------------------------------------------------------------------------------------


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


EMPTY_TILE = _png(np.zeros((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8))


def _class_tile(src: Any, source: LayerSource, x: int, y: int, z: int, opts: tuple) -> bytes:
    palette = {cid: (r, g, b, a) for cid, r, g, b, a in source.palette}
    cmap = {int(k): tuple(v) for k, v in (src.colormap or palette).items()}  # the file's colour table first
    cmap[0] = (0, 0, 0, 0)  # 0 = no class / unlabelled, whatever the file's colour table says
    img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="nearest")
    rgba = np.zeros((256, 4), dtype=np.uint8)
    for cid, colour in cmap.items():
        if 0 <= cid < 256:
            rgba[cid] = colour[:4] if len(colour) == 4 else (*colour[:3], 255)
    data = np.asarray(img.array.data[0]).clip(0, 255).astype(np.uint8)
    out = rgba[data]
    out[..., 3] = np.where(np.ma.getmaskarray(img.array)[0], 0, out[..., 3])
    return _png(out)


def _ramp_tile(src: Any, source: LayerSource, x: int, y: int, z: int, opts: tuple) -> bytes:
    from rio_tiler.colormap import cmap

    img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=1)
    img.rescale(in_range=((0, 100),))
    return bytes(img.render(img_format="PNG", colormap=cmap.get(CONFIDENCE_RAMP)))


@functools.lru_cache(maxsize=64)
def _stretch_range(path: str, mtime: float, bands: tuple[int, ...], pct: tuple[float, float]) -> tuple:
    """Per band (low, high) at the ``pct`` percentiles of a read decimated to <= 1024 px (overviews if any)."""
    import rasterio

    with rasterio.open(path) as src:
        f = max(1, -(-max(src.height, src.width) // 1024))
        shape = (len(bands), max(1, src.height // f), max(1, src.width // f))
        data = src.read(list(bands), out_shape=shape, masked=True).astype("float64")
    out = []
    for b in data:
        vals = b.compressed()
        vals = vals[np.isfinite(vals) & (vals != 0)]
        lo, hi = np.percentile(vals, pct) if vals.size else (0.0, 1.0)
        out.append((float(lo), float(max(hi, lo + 1e-9))))
    return tuple(out)


def _rgb_tile(src: Any, source: LayerSource, x: int, y: int, z: int, opts: tuple) -> bytes:
    bands, pct = opts
    if any(b < 1 or b > src.dataset.count for b in bands):
        raise TileError(400, f"bands {bands} do not exist: the image has bands 1 to {src.dataset.count}")
    ranges = _stretch_range(source.path, os.path.getmtime(source.path), bands, pct)
    img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=bands)
    img.rescale(in_range=ranges)
    return bytes(img.render(img_format="PNG"))


STYLES: dict[str, Callable[[Any, LayerSource, int, int, int, tuple], bytes]] = {
    "classes": _class_tile,
    "ramp": _ramp_tile,
    "rgb": _rgb_tile,
}


@functools.lru_cache(maxsize=CACHE_TILES)
def _cached_tile(source: LayerSource, mtime: float, z: int, x: int, y: int, opts: tuple) -> bytes:
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    try:
        with Reader(source.path) as src:
            if src.dataset.crs is None:
                raise TileError(404, f"{source.path} is not georeferenced: it cannot be drawn as web-map tiles")
            if not src.tile_exists(x, y, z):
                return EMPTY_TILE
            return STYLES[source.style](src, source, x, y, z, opts)
    except TileOutsideBounds:
        return EMPTY_TILE


def parse_options(style: str, query: dict[str, str]) -> tuple:
    """The rendering options of the ``rgb`` style from the URL's query (``bands``, ``stretch``); () otherwise."""
    if style != "rgb":
        return ()
    try:
        bands = tuple(int(b) for b in query.get("bands", ",".join(map(str, DEFAULT_BANDS))).split(","))
        pct = tuple(float(p) for p in query.get("stretch", ",".join(map(str, DEFAULT_STRETCH))).split(","))
    except ValueError:
        raise TileError(
            400, "bands must be integers (bands=3,2,1) and stretch two percentiles (stretch=2,98)"
        ) from None
    if len(bands) not in (1, 3) or len(pct) != 2 or not 0 <= pct[0] < pct[1] <= 100:
        raise TileError(400, "give one or three bands (bands=3,2,1) and two percentiles 0-100 (stretch=2,98)")
    return (bands * 3 if len(bands) == 1 else bands, pct)


def tile_png(run_id: int, layer: str, z: int, x: int, y: int, query: dict[str, str] | None = None) -> bytes:
    """PNG bytes of tile ``z/x/y`` of ``layer`` of run ``run_id``; a transparent tile off the image."""
    if z < 0 or z > 30 or not (0 <= x < 2**z and 0 <= y < 2**z):
        raise TileError(400, f"tile {z}/{x}/{y} does not exist in Web Mercator")
    source = resolve_layer(run_id, layer)
    opts = parse_options(source.style, query or {})
    return _cached_tile(source, os.path.getmtime(source.path), z, x, y, opts)


def max_zoom(path: str) -> int | None:
    """The zoom at which one tile pixel is about one pixel of the raster (None if it is not georeferenced)."""
    geo = geo_extent(path)
    return geo[1] if geo else None


def geo_extent(path: str) -> tuple[list[list[float]], int] | None:
    """``([[south, west], [north, east]], highest zoom)`` of a raster, None if it is not georeferenced (such a
    scene cannot be drawn in Web Mercator; the page shows it as a plain image)."""
    import rasterio
    from rio_tiler.io import Reader

    with rasterio.open(path) as ds:
        if ds.crs is None:
            return None
    with Reader(path) as src:
        w, s, e, n = src.get_geographic_bounds("EPSG:4326")
        return [[float(s), float(w)], [float(n), float(e)]], int(src.maxzoom)


def layer_ref(run_id: int, layer: str, **query: str) -> TileLayerRef | None:
    """The tile layer of ``layer`` of run ``run_id`` for a map (None if its file is not georeferenced); raises
    :class:`TileError` with what is wrong when the layer cannot be served (no such file, deleted, refused)."""
    source = resolve_layer(run_id, layer)
    opts = parse_options(source.style, query)
    geo = geo_extent(source.path)
    if geo is None:
        return None
    if opts:
        import rasterio

        with rasterio.open(source.path) as ds:
            if any(b < 1 or b > ds.count for b in opts[0]):
                raise TileError(400, f"bands {query.get('bands')} do not exist: the image has bands 1 to {ds.count}")
    url = tile_url(run_id, layer, os.path.getmtime(source.path), **query)
    return TileLayerRef(url, geo[0], geo[1])


async def tile_endpoint(request: Any) -> Any:
    """Starlette handler of :data:`TILE_ROUTE`: the PNG, or a plain-text error with its status."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse, Response

    p = request.path_params
    try:
        png = await run_in_threadpool(
            tile_png, p["run_id"], p["layer"], p["z"], p["x"], p["y"], dict(request.query_params)
        )
    except TileError as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def routes() -> list[Any]:
    """The Starlette routes to mount beside the pages (``st.App(..., routes=routes())``)."""
    from starlette.routing import Route

    return [Route(TILE_ROUTE, tile_endpoint, methods=["GET"])]
