"""Web-map tiles of a run's COGs (app/services/tiles.py): rendered from real COGs in tmp_path, through the
function and through the real app server (``streamlit run app/server.py`` on a loopback port)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer

from tests.app.conftest import REPO

CLASSES = [(1, "forest", "#228b22"), (2, "water", "#1f78b4"), (3, "urban", "#e31a1c")]
RGB = {1: (0x22, 0x8B, 0x22), 2: (0x1F, 0x78, 0xB4), 3: (0xE3, 0x1A, 0x1C)}
T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)  # EPSG:32633, 10 m pixels
SIZE = 600
WMQ = morecantile.tms.get("WebMercatorQuad")


def _class_cog(folder: Path) -> Path:
    """A 600 x 600 class-map COG the way the engine writes one (colour table, nodata 0, mode overviews): blocks of
    classes 1-3 in 30 px squares, a nodata band along the top."""
    from core.data.cog import finalize_cog, open_tiled, tiled_profile, write_class_metadata

    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    data = (((rows // 30) + (cols // 30)) % 3 + 1).astype("uint8")
    data[:40, :] = 0
    tmp = folder / "pred.tmp.tif"
    with open_tiled(tmp, **tiled_profile(SIZE, SIZE, Affine(*T), "EPSG:32633")) as dst:
        dst.write(data, 1)
        write_class_metadata(dst, [c[0] for c in CLASSES], [c[1] for c in CLASSES], [c[2] for c in CLASSES])
    return finalize_cog(tmp, folder / "prediction.tif")


def _run(db_url: str, artifacts: dict[str, str]) -> int:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("predict", {"kind": "predict", "scene": "none"})
    t.start(rid)
    t.succeed(rid, metrics={}, artifacts=artifacts)
    return rid


def _rgba(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def _expected(cog: Path, tile: Any) -> tuple[np.ndarray, np.ndarray]:
    """The class under each pixel centre of ``tile`` (0 off the raster) and whether that centre sits clearly
    inside a COG pixel (not within 0.1 px of a pixel edge, where nearest neighbour may go either way)."""
    b = WMQ.xy_bounds(tile)
    step = (b.right - b.left) / 256
    xs, ys = np.meshgrid(b.left + (np.arange(256) + 0.5) * step, b.top - (np.arange(256) + 0.5) * step)
    e, n = Transformer.from_crs("EPSG:3857", "EPSG:32633", always_xy=True).transform(xs, ys)
    col, row = (e - T[2]) / T[0], (n - T[5]) / T[4]
    inside = (col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE)
    with rasterio.open(cog) as src:
        data = src.read(1)
    cls = np.where(inside, data[row.clip(0, SIZE - 1).astype(int), col.clip(0, SIZE - 1).astype(int)], 0)
    clear = (np.abs(col - np.round(col)) > 0.1) & (np.abs(row - np.round(row)) > 0.1)
    return cls, clear


def _tile_at_max_zoom(cog: Path, row: int, col: int) -> Any:
    from app.services.tiles import max_zoom

    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        T[2] + (col + 0.5) * T[0], T[5] + (row + 0.5) * T[4]
    )
    return WMQ.tile(lon, lat, max_zoom(str(cog)))


def test_a_tile_at_the_highest_zoom_shows_the_class_colour_of_the_cog_pixel_under_it(
    home: Path, db_url: str, tmp_path: Path
) -> None:
    from app.services.tiles import tile_png

    cog = _class_cog(home)
    rid = _run(db_url, {"prediction": str(cog)})
    tile = _tile_at_max_zoom(cog, 300, 300)
    img = _rgba(tile_png(rid, "prediction", tile.z, tile.x, tile.y))
    assert img.shape == (256, 256, 4)
    cls, clear = _expected(cog, tile)
    checked = 0
    for cid, rgb in RGB.items():
        sel = clear & (cls == cid)
        assert sel.sum() > 100
        assert (img[sel][:, :3] == rgb).all(axis=1).mean() == 1.0, f"class {cid}"
        assert (img[sel][:, 3] == 255).all()
        checked += int(sel.sum())
    assert checked > 0.9 * 256 * 256 * clear.mean() - 1


def test_nodata_and_off_image_are_transparent(home: Path, db_url: str) -> None:
    from app.services.tiles import tile_png

    cog = _class_cog(home)
    rid = _run(db_url, {"prediction": str(cog)})
    tile = _tile_at_max_zoom(cog, 10, 300)  # in the nodata band along the top
    img = _rgba(tile_png(rid, "prediction", tile.z, tile.x, tile.y))
    cls, clear = _expected(cog, tile)
    assert (img[clear & (cls == 0)][:, 3] == 0).all()
    assert (img[clear & (cls > 0)][:, 3] == 255).all()
    far = WMQ.tile(-120.0, -40.0, tile.z)  # the other side of the world
    assert (_rgba(tile_png(rid, "prediction", far.z, far.x, far.y))[..., 3] == 0).all()


def test_confidence_is_a_colour_ramp_with_nodata_transparent(home: Path, db_url: str) -> None:
    from rasterio.enums import Resampling

    from app.services.tiles import tile_png
    from core.data.cog import CONFIDENCE_NODATA, finalize_cog, open_tiled, tiled_profile

    conf = np.tile(np.linspace(0, 100, SIZE).astype("uint8"), (SIZE, 1))
    conf[:40, :] = CONFIDENCE_NODATA
    tmp = home / "conf.tmp.tif"
    profile = tiled_profile(SIZE, SIZE, Affine(*T), "EPSG:32633", nodata=CONFIDENCE_NODATA)
    with open_tiled(tmp, **profile) as dst:
        dst.write(conf, 1)
    path = finalize_cog(tmp, home / "prediction_confidence.tif", Resampling.average)
    rid = _run(db_url, {"prediction": str(_class_cog(home)), "confidence": str(path)})
    tile = _tile_at_max_zoom(path, 10, 300)
    img = _rgba(tile_png(rid, "confidence", tile.z, tile.x, tile.y))
    cls, clear = _expected(home / "prediction.tif", tile)  # same grid: class 0 = the nodata band
    assert (img[clear & (cls == 0)][:, 3] == 0).all()
    shown = img[clear & (cls > 0)]
    assert (shown[:, 3] == 255).all() and len(np.unique(shown[:, :3], axis=0)) > 5  # a ramp, not one colour


def test_imagery_rgb_with_band_choice_and_stretch(home: Path, db_url: str, tmp_path: Path) -> None:
    from app.services.tiles import TileError, tile_png
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.conftest import write_raster

    bands = np.stack([np.full((SIZE, SIZE), v, dtype="uint16") for v in (100, 2000, 4000)])
    bands[0, :, SIZE // 2 :] = 300
    img_path = write_raster(tmp_path / "img.tif", bands, transform=T)
    spec = SceneSpec.model_validate(
        {
            "name": "rgb",
            "classes": [{"id": c, "name": n, "color": h} for c, n, h in CLASSES],
            "acquisitions": [{"date": "20220101", "files": {"s2": [str(img_path)]}}],
        }
    )
    register_scene(spec, SceneStore(db_url), home)
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("predict", {"kind": "predict", "scene": "rgb"})
    t.succeed(rid, metrics={}, artifacts={"prediction": str(_class_cog(home))})
    tile = _tile_at_max_zoom(img_path, 300, 300)
    img = _rgba(tile_png(rid, "imagery", tile.z, tile.x, tile.y, {"bands": "1,1,1", "stretch": "0,100"}))
    cls, clear = _expected(home / "prediction.tif", tile)
    assert clear.sum() > 1000
    grey = img[clear][:, 0]
    assert set(np.unique(grey)) <= {0, 255} and {0, 255} <= set(np.unique(grey))  # 100 -> black, 300 -> white
    with pytest.raises(TileError, match="bands"):
        tile_png(rid, "imagery", tile.z, tile.x, tile.y, {"bands": "4,2,1"})


def test_missing_cog_unknown_run_or_layer_and_files_outside_the_roots_are_refused(
    home: Path, db_url: str, tmp_path: Path
) -> None:
    from app.services.tiles import TileError, tile_png

    cog = _class_cog(home)
    rid = _run(db_url, {"prediction": str(cog)})
    tile = _tile_at_max_zoom(cog, 300, 300)
    outside = Path("/etc/hostname") if Path("/etc/hostname").exists() else Path("/etc/passwd")
    stray = _run(db_url, {"prediction": str(outside)})
    cases = [
        (rid + 100, "prediction", 404, "does not exist"),
        (rid, "../../etc/passwd", 404, "unknown layer"),
        (rid, "confidence", 404, "has no confidence layer"),
        (stray, "prediction", 403, "outside the workbench"),
    ]
    for run_id, layer, status, text in cases:
        with pytest.raises(TileError, match=text) as err:
            tile_png(run_id, layer, tile.z, tile.x, tile.y)
        assert err.value.status == status
    os.remove(cog)
    with pytest.raises(TileError, match="missing") as err:
        tile_png(rid, "prediction", tile.z, tile.x, tile.y)
    assert err.value.status == 404


# --- through the real app server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


@pytest.fixture
def app_server(home: Path) -> Iterator[str]:
    """``streamlit run app/server.py`` (what ``python -m jobs app`` starts) on a free loopback port, with ``home``."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "server.py"), "--server.address",
           "127.0.0.1", "--server.port", str(port), "--server.headless", "true", "--server.enableStaticServing", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if _get(base + "/_stcore/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise TimeoutError("the app server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_app_server_serves_tiles_on_its_own_port(home: Path, db_url: str, app_server: str) -> None:
    cog = _class_cog(home)
    rid = _run(db_url, {"prediction": str(cog)})
    tile = _tile_at_max_zoom(cog, 300, 300)
    status, body, ctype = _get(f"{app_server}/tiles/{rid}/prediction/{tile.z}/{tile.x}/{tile.y}.png")
    assert status == 200 and ctype == "image/png"
    img = _rgba(body)
    cls, clear = _expected(cog, tile)
    sel = clear & (cls == 2)
    assert sel.sum() > 100 and (img[sel][:, :3] == RGB[2]).all()
    for path, codes in [
        (f"/tiles/{rid}/..%2F..%2Fetc%2Fpasswd/{tile.z}/{tile.x}/{tile.y}.png", (400, 404)),
        (f"/tiles/{rid}/../../../etc/passwd", (400, 404)),
        (f"/tiles/{rid}/prediction/{tile.z}/{2**tile.z}/0.png", (400,)),
        (f"/tiles/{rid + 9}/prediction/{tile.z}/{tile.x}/{tile.y}.png", (404,)),
    ]:
        status, body, _ = _get(app_server + path)
        assert status in codes and b"root:" not in body, (path, status, body[:200])
    os.remove(cog)
    status, body, ctype = _get(f"{app_server}/tiles/{rid}/prediction/{tile.z}/{tile.x}/{tile.y + 1}.png")
    assert status == 404 and b"missing" in body and ctype.startswith("text/plain")
