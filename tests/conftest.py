"""Shared fixtures: an isolated workbench home and database, tiny rasters, and a real 2-worker LocalCluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SHARED_DATA.exists():
        skip = pytest.mark.skip(reason=f"sample data not found at {SHARED_DATA}")
        for item in items:
            if "shared_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh WORKBENCH_HOME with its own SQLite database for one test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(h))
    monkeypatch.setenv("WORKBENCH_DB_URL", f"sqlite:///{h / 'workbench.db'}")
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", os.pathsep.join([str(tmp_path), str(SHARED_DATA)]))
    monkeypatch.delenv("WORKBENCH_SCHEDULER", raising=False)
    return h


@pytest.fixture
def db_url(home: Path) -> str:
    return f"sqlite:///{home / 'workbench.db'}"


@pytest.fixture(scope="session")
def cluster_client() -> Iterator[object]:
    """A real LocalCluster with 2 worker processes (1 thread each), shared by the session's cluster tests."""
    from dask.distributed import Client

    from core.distributed.cluster import local_cluster

    cluster = local_cluster(2, 1, host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit="4GiB")
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform: tuple[float, ...] | None = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0),
    nodata: float | None = None,
    **extra: object,
) -> Path:
    """Write ``data`` ((bands, rows, cols) or (rows, cols)) as a GeoTIFF; crs/transform None writes neither."""
    import rasterio
    from affine import Affine

    arr = data if data.ndim == 3 else data[None]
    profile: dict[str, object] = dict(
        driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=arr.dtype.name
    )
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = Affine(*transform)
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path


@pytest.fixture
def make_raster(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``make_raster("name.tif", array, crs=..., transform=..., nodata=...)`` -> path in tmp_path."""

    def _make(name: str, data: np.ndarray, **kw: object) -> Path:
        return write_raster(tmp_path / name, data, **kw)  # type: ignore[arg-type]

    return _make


# Real servers (PostgreSQL, one-node SLURM) started per session on loopback ports; see tests/servers.py.
from tests.servers import postgres_server, postgres_url, slurm_cluster  # noqa: E402,F401
