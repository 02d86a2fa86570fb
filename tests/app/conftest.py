"""Fixtures of the app tests: a registered tiny scene, AOIs on it, and AppTest runners for each page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyproj import Transformer

from tests.conftest import write_raster

REPO = Path(__file__).resolve().parents[2]
T0 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)  # EPSG:32633, 10 m pixels
SIZE = 64


# The launch form's values for the ``tiny_scene`` (the form adapter's and pre-flight's tests)
FORM = {
    "scene": "tiny",
    "model": "unet",
    "scheme": "data_parallel",
    "num_workers": 2,
    "epochs": 2,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "size": 16,
}


def page_path(name: str) -> str:
    return str(REPO / "app" / "views" / f"{name}.py")


def app_test(name: str, timeout: float = 30) -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(page_path(name), default_timeout=timeout)


def pixel_box_wgs84(c0: float, r0: float, c1: float, r1: float, transform: tuple[float, ...] = T0) -> dict[str, Any]:
    """A GeoJSON Polygon in EPSG:4326 covering label-grid pixels cols [c0, c1) rows [r0, r1) of the test scene."""
    a, _, c, _, e, f = transform
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    pts = [(c + a * cc, f + e * rr) for cc, rr in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
    return {"type": "Polygon", "coordinates": [[list(tr.transform(x, y)) for x, y in pts]]}


@pytest.fixture
def tiny_scene(home: Path, tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    """A registered 64x64 3-band scene 'tiny' with labels: class 1 left half, class 2 right half, row 0 unlabelled."""
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    rng = np.random.default_rng(0)
    img = write_raster(tmp_path / "img.tif", rng.integers(1, 4000, (3, SIZE, SIZE)).astype("uint16"), transform=T0)
    lab = np.ones((SIZE, SIZE), dtype="uint8")
    lab[:, SIZE // 2 :] = 2
    lab[0, :] = 0
    labels = write_raster(tmp_path / "labels.tif", lab, transform=T0)
    spec = SceneSpec.model_validate(
        {
            "name": "tiny",
            "classes": [
                {"id": 1, "name": "forest", "color": "#228b22"},
                {"id": 2, "name": "water", "color": "#1f78b4"},
            ],
            "acquisitions": [{"date": "20220101", "files": {"s2": [str(img)]}, "labels": str(labels)}],
        }
    )
    return register_scene(spec, SceneStore(db_url), home)


@pytest.fixture(autouse=True)
def _restore_main_module():  # type: ignore[no-untyped-def]
    """AppTest leaves the page script as ``__main__``; Dask's spawned workers would then re-run the page on start.
    Put the real ``__main__`` back after each test so a LocalCluster made later starts cleanly."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
