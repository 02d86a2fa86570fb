"""Building the folium maps of the pages, working offline.

folium points its ``<script>`` tags at public CDNs; offline (and on air-gapped clusters) they fail and the map
iframe stays empty. :func:`configure_offline_assets` points folium and its Draw plugin at the Leaflet files that
``scripts/install_extras.sh`` puts in ``app/static`` (served by Streamlit at ``/app/static/...`` with
``server.enableStaticServing``), keeping the CDN links when the files are missing. Base tiles (OpenStreetMap) may
still fail to load; scene quicklooks and overlays are drawn from the app itself, so the map is usable without them.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import folium
import folium.plugins
from folium.raster_layers import ImageOverlay
from folium.template import Template

from app.services.overlays import Overlay
from app.services.tiles import TileLayerRef
from core.data.scene import ClassInfo, Scene

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/app/static"
FOOTPRINT_STYLE = {"color": "#3388ff", "weight": 2, "fillOpacity": 0.05}
SELECTED_STYLE = {"color": "#ff7800", "weight": 3, "fillOpacity": 0.0}
AOI_STYLE = {"color": "#e31a1c", "weight": 2, "fillColor": "#e31a1c", "fillOpacity": 0.15}


def configure_offline_assets(static_dir: Path = STATIC_DIR) -> bool:
    """Serve Leaflet and Leaflet.draw from ``static_dir`` when present; returns True if the local files are used."""
    leaflet = static_dir / "leaflet" / "leaflet.js"
    draw = static_dir / "leaflet-draw" / "leaflet.draw.js"
    if not (leaflet.exists() and draw.exists()):
        log.info("local Leaflet assets not found in %s: the map loads them from CDNs", static_dir)
        return False
    folium.Map.default_js = [("leaflet", f"{STATIC_URL}/leaflet/leaflet.js")]
    folium.Map.default_css = [("leaflet_css", f"{STATIC_URL}/leaflet/leaflet.css")]
    folium.plugins.Draw.default_js = [("leaflet_draw_js", f"{STATIC_URL}/leaflet-draw/leaflet.draw.js")]
    folium.plugins.Draw.default_css = [("leaflet_draw_css", f"{STATIC_URL}/leaflet-draw/leaflet.draw.css")]
    return True


def _bounds_of(geojson: dict[str, Any]) -> list[list[float]]:
    """``[[south, west], [north, east]]`` of a GeoJSON Polygon/MultiPolygon in lon/lat."""
    coords: list[Sequence[float]] = []

    def walk(x: Any) -> None:
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (int, float)):
            coords.append(x)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)

    walk(geojson.get("coordinates", []))
    lons = [c[0] for c in coords]
    lats = [c[1] for c in coords]
    return [[min(lats), min(lons)], [max(lats), max(lons)]]


def base_map(bounds: list[list[float]] | None = None, view: dict[str, Any] | None = None) -> folium.Map:
    """An OpenStreetMap map (grey when the tiles cannot load, which is fine) at ``view`` (``{"center": {"lat",
    "lng"}, "zoom"}``, what st_folium reports), else fitted to ``bounds``."""
    if view:
        return folium.Map(location=_location(view), zoom_start=view["zoom"], tiles="OpenStreetMap", control_scale=True)
    m = folium.Map(location=[20, 0], zoom_start=2, tiles="OpenStreetMap", control_scale=True)
    if bounds:
        m.fit_bounds(bounds)
    return m


def _location(view: dict[str, Any]) -> list[float]:
    return [float(view["center"]["lat"]), float(view["center"]["lng"])]


def launch_map(
    scenes: Sequence[Scene], selected: Scene | None, aoi: dict[str, Any] | None, quicklook: Overlay | None = None
) -> folium.Map:
    """The Map-and-launch map: every georeferenced scene's footprint (``selected`` highlighted and fitted),
    its quicklook, the current AOI, and the Draw toolbar (rectangle and polygon only)."""
    fit = None
    if selected is not None and selected.footprint_wgs84:
        fit = _bounds_of(selected.footprint_wgs84)
    m = base_map(fit)
    if quicklook is not None and quicklook.bounds:
        ImageOverlay(quicklook.data_url, bounds=quicklook.bounds, opacity=0.9, name="imagery").add_to(m)
    for s in scenes:
        if not s.footprint_wgs84:
            continue
        style = SELECTED_STYLE if selected is not None and s.name == selected.name else FOOTPRINT_STYLE
        folium.GeoJson(
            {"type": "Feature", "geometry": s.footprint_wgs84, "properties": {"name": s.name}},
            name=f"scene {s.name}",
            style_function=lambda _f, st=style: st,
            tooltip=s.name,
        ).add_to(m)
    if aoi:
        folium.GeoJson(
            {"type": "Feature", "geometry": aoi, "properties": {}}, name="AOI", style_function=lambda _f: AOI_STYLE
        ).add_to(m)
    folium.plugins.Draw(
        export=False,
        draw_options={
            "polyline": False,
            "circle": False,
            "marker": False,
            "circlemarker": False,
            "rectangle": True,
            "polygon": True,
        },
        edit_options={"edit": False, "remove": True},
    ).add_to(m)
    return m


def _vector_layer(name: str, geojson: dict[str, Any], colours: dict[int, str]) -> folium.GeoJson:
    """Polygons (filled with their class colour) or sample points (circles in their map class colour)."""
    features = geojson.get("features") or [{}]
    props = features[0].get("properties") or {}
    points = (features[0].get("geometry") or {}).get("type") == "Point"
    cls = "map_class" if points else "class_id"

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        cid = (feature.get("properties") or {}).get(cls)
        colour = colours.get(int(cid), "#ff00ff") if str(cid or "").isdigit() else "#ff00ff"
        if points:
            return {"color": "#000000", "weight": 1, "fillColor": colour, "fillOpacity": 0.9}
        return {"color": "#222222", "weight": 1, "fillColor": colour, "fillOpacity": 0.25}

    shown = [f for f in ("id", "class_name", "map_class_name", "area_ha", "mean_conf", "ref_class") if f in props]
    return folium.GeoJson(
        geojson,
        name=name,
        style_function=style,
        marker=folium.CircleMarker(radius=5, fill=True) if points else None,
        tooltip=folium.GeoJsonTooltip(fields=shown) if shown else None,
    )


MAX_ZOOM = 24  # past a raster's own highest zoom Leaflet enlarges its tiles of that zoom (pixels stay sharp)


def _tile_layer(name: str, ref: TileLayerRef, opacity: float) -> folium.TileLayer:
    """A layer served by the app's own tile route (same origin, so it works offline and behind one forwarded port)."""
    return folium.TileLayer(
        tiles=ref.url,
        attr="Land-Cover Workbench",
        name=name,
        overlay=True,
        opacity=opacity,
        min_zoom=0,
        max_zoom=MAX_ZOOM,
        max_native_zoom=ref.max_zoom,
        bounds=ref.bounds,
        tile_size=256,
        show=ref.show,
    )


def _add_layers(
    m: folium.Map,
    layers: Sequence[tuple[str, Overlay | TileLayerRef, float]],
    vectors: Sequence[tuple[str, dict[str, Any]]],
    colours: dict[int, str],
) -> None:
    for name, ov, opacity in layers:
        if isinstance(ov, TileLayerRef):
            _tile_layer(name, ov, opacity).add_to(m)
        elif ov.bounds:
            ImageOverlay(ov.data_url, bounds=ov.bounds, opacity=opacity, name=name, interactive=False).add_to(m)
    for name, geojson in vectors:
        _vector_layer(name, geojson, colours).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)


def review_map(
    layers: Sequence[tuple[str, Overlay | TileLayerRef, float]],
    fit: list[list[float]] | None,
    vectors: Sequence[tuple[str, dict[str, Any]]] = (),
    colours: dict[int, str] | None = None,
    view: dict[str, Any] | None = None,
) -> folium.Map:
    """A map with image overlays ``(name, overlay, opacity)`` in drawing order, then vector layers ``(name,
    GeoJSON in EPSG:4326)`` coloured by class, at ``view`` or fitted to ``fit``."""
    m = base_map(fit, view)
    _add_layers(m, layers, vectors, colours or {})
    return m


class SyncedDualMap(folium.plugins.DualMap):
    """Two maps side by side that move together (pan and zoom), without the Leaflet.Sync plugin that folium loads
    from a CDN (offline it is missing and the maps would not follow each other)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (a, b) {
            var busy = false;
            function follow(src, dst) {
                src.on("move zoomend", function () {
                    if (busy) { return; }
                    busy = true;
                    dst.setView(src.getCenter(), src.getZoom(), {animate: false});
                    busy = false;
                });
            }
            follow(a, b);
            follow(b, a);
        })({{ this.m1.get_name() }}, {{ this.m2.get_name() }});
        {% endmacro %}
        """
    )
    default_js: list[tuple[str, str]] = []


def dual_review_map(
    left: Sequence[tuple[str, Overlay | TileLayerRef, float]],
    right: Sequence[tuple[str, Overlay | TileLayerRef, float]],
    fit: list[list[float]] | None,
    vectors: tuple[Sequence[tuple[str, dict[str, Any]]], Sequence[tuple[str, dict[str, Any]]]] = ((), ()),
    colours: dict[int, str] | None = None,
    view: dict[str, Any] | None = None,
) -> SyncedDualMap:
    """Two review maps in one frame, moving together: ``left`` and ``right`` layers, each with its vectors, at
    ``view`` or fitted to ``fit``."""
    if view:
        m = SyncedDualMap(location=_location(view), zoom_start=view["zoom"], tiles="OpenStreetMap", control_scale=True)
    else:
        m = SyncedDualMap(location=[20, 0], zoom_start=2, tiles="OpenStreetMap", control_scale=True)
        if fit:
            m.fit_bounds(fit)
    for half, layers, vec in ((m.m1, left, vectors[0]), (m.m2, right, vectors[1])):
        _add_layers(half, layers, vec, colours or {})
    return m


def drawn_geometry(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The geometry of the shape last drawn on an ``st_folium`` map (None when nothing was drawn)."""
    if not result:
        return None
    feature = result.get("last_active_drawing")
    if not feature and result.get("all_drawings"):
        feature = result["all_drawings"][-1]
    if not feature:
        return None
    geom = feature.get("geometry", feature)
    return geom if geom.get("type") in ("Polygon", "MultiPolygon") else None


def legend_html(classes: Sequence[ClassInfo], title: str = "Classes") -> str:
    """An HTML legend (coloured squares and class names), for ``st.html``."""
    items = "".join(
        f'<div class="wb-legend-item" style="display:flex;align-items:center;gap:6px;margin:2px 0">'
        f'<span style="display:inline-block;width:14px;height:14px;background:{html.escape(c.color)};'
        f'border:1px solid #555"></span><span>{c.id} {html.escape(c.name)}</span></div>'
        for c in classes
    )
    return (
        f'<div class="wb-legend" data-testid="wb-legend" style="font-size:0.9em">'
        f"<b>{html.escape(title)}</b>{items}</div>"
    )
