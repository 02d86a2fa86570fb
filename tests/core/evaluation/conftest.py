"""Tiny class maps (uint8, nodata 0, CLASSES tag) written with rasterio in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.data.cog import write_class_metadata

UTM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#b2df8a"]


def write_class_map(
    path: Path,
    data: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str] | None = None,
    crs: str | None = "EPSG:32633",
    transform: tuple[float, ...] | None = UTM,
    blocksize: int = 16,
) -> Path:
    """Write ``data`` (rows, cols) as a tiled uint8 class map with small blocks (so reads are really block-wise)."""
    import rasterio
    from affine import Affine

    rows, cols = data.shape
    profile: dict[str, object] = dict(
        driver="GTiff",
        width=cols,
        height=rows,
        count=1,
        dtype="uint8",
        nodata=0,
        tiled=True,
        blockxsize=blocksize,
        blockysize=blocksize,
    )
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = Affine(*transform)
    names = list(class_names) if class_names is not None else [f"c{c}" for c in class_ids]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8), 1)
        write_class_metadata(dst, list(class_ids), names, COLORS[: len(class_ids)])
    return path


@pytest.fixture
def class_map(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``class_map("name.tif", array, class_ids, ...)`` -> path in tmp_path."""

    def _make(name: str, data: np.ndarray, class_ids: Sequence[int], **kw: object) -> Path:
        return write_class_map(tmp_path / name, data, class_ids, **kw)  # type: ignore[arg-type]

    return _make
