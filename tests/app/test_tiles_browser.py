"""Map review in a real browser (headless Chromium): the app server (``app/server.py``) serves the tiles of a run's
class-map COG to the page's Leaflet map; at the highest zoom a pixel on screen has the class colour of the COG pixel
under it. Skipped where ``/usr/bin/chromium`` or playwright is missing."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from tests.app.services.test_tiles import RGB, T, _class_cog, _run, app_server  # noqa: F401  (app_server: fixture)

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (scripts/install_extras.sh)"),
]


def _map_frame(page, timeout_ms: float = 120_000):  # type: ignore[no-untyped-def]
    """The frame of the page's Leaflet map (st_folium's component), once the map is drawn."""
    page.frame_locator("iframe[title*='st_folium']").locator(".leaflet-container").first.wait_for(timeout=timeout_ms)
    return next(f for f in page.frames if "st_folium" in f.url)


def test_at_the_highest_zoom_the_screen_shows_the_class_colour_of_the_cog_pixel(
    home: Path,
    db_url: str,
    app_server: str,  # noqa: F811
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    from app.services.tiles import max_zoom

    cog = _class_cog(home)
    rid = _run(db_url, {"prediction": str(cog)})
    zoom = max_zoom(str(cog))
    row, col = 315, 315  # the centre of a 30 px block of class (10 + 10) % 3 + 1 = 3
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        T[2] + (col + 0.5) * T[0], T[5] + (row + 0.5) * T[4]
    )
    tiles: list[tuple[int, str]] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.on("response", lambda r: tiles.append((r.status, r.url)) if "/tiles/" in r.url else None)
        page.goto(f"{app_server}/review", wait_until="networkidle")
        frame = _map_frame(page)
        frame.evaluate(
            """([lat, lon, zoom]) => {
                window.map.eachLayer(l => { if (l._url && l._url.startsWith('/tiles/')) { l.setOpacity(1); }
                                         else if (l._url) { window.map.removeLayer(l); } });
                window.map.setView([lat, lon], zoom, {animate: false});
            }""",
            [lat, lon, zoom],
        )
        frame.wait_for_function(
            "Array.from(document.querySelectorAll('img.leaflet-tile')).filter(i => i.src.includes('/tiles/'))"
            f".some(i => i.src.includes('/{zoom}/') && i.complete && i.naturalWidth === 256)",
            timeout=60_000,
        )
        time.sleep(1)
        point = frame.evaluate(
            f"(() => {{ const p = window.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()"
        )
        box = frame.frame_element().bounding_box()
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
        browser.close()
    assert any(s == 200 and f"/tiles/{rid}/prediction/{zoom}/" in u for s, u in tiles)
    x, y = round(box["x"] + point[0]), round(box["y"] + point[1])
    assert tuple(int(v) for v in shot[y, x]) == RGB[3]
