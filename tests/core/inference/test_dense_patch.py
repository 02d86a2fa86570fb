"""Dense evaluation of a per-pixel model on a real scene: the same classes as patch by patch (issue 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.configs import AOIConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.geo.windows import PixelWindow
from core.models.bundle import ModelMeta, save_bundle

keras = pytest.importorskip("keras")

CLASSES = tuple(ClassInfo(i, f"class{i}", f"#0000{i:02x}") for i in (1, 2, 3, 4))


def _strzegom(shared_data: Path) -> Scene:
    path = shared_data / "strzegom" / "image_20230301.tif"
    with rasterio.open(path) as ds:
        mod = Modality("s2", ds.width, ds.height, tuple(ds.transform)[:6], ds.count, ds.dtypes[0], ds.nodatavals)
        crs = ds.crs.to_wkt()
    return Scene("strzegom", True, crs, (mod,), (Acquisition("2023-03-01", {"s2": (str(path),)}),), CLASSES, "s2")


def _bundle(tmp_path: Path, scene: Scene, patch: int) -> Path:
    from core.models.patch_fcn import build_patch_fcn

    with rasterio.open(scene.acquisitions[0].files["s2"][0]) as ds:
        x = ds.read().reshape(ds.count, -1).astype(np.float64)
    keras.utils.set_random_seed(20)
    meta = ModelMeta(
        model="patch_fcn",
        task="patch",
        modalities=("s2",),
        sample_size={"s2": patch},
        class_ids=tuple(c.id for c in CLASSES),
        class_names=tuple(c.name for c in CLASSES),
        class_colors=tuple(c.color for c in CLASSES),
        band_stats={"s2": {"mean": x.mean(axis=1).tolist(), "std": x.std(axis=1).tolist()}},
        scene="strzegom",
    )
    return save_bundle(tmp_path / "fcn", build_patch_fcn((patch, patch, 10), len(CLASSES), width=8), meta)


@pytest.mark.cluster
@pytest.mark.shared_data
def test_patch_fcn_dense_map_equals_per_patch_classes_on_strzegom(
    shared_data: Path, tmp_path: Path, cluster_client: Any
) -> None:
    """A 9 px patch_fcn mapped densely on the workers (one model call per 256 px block) gives every pixel of a
    300 x 300 px corner of strzegom (scene edges included: patches run off the raster) the class its own patch gets
    when it is classified patch by patch (the per-patch path of every patch model)."""
    from core.inference.predict import run_predict
    from core.inference.windows import predict_patch_window

    scene = _strzegom(shared_data)
    bundle = _bundle(tmp_path, scene, 9)
    ring = [(101, 0), (401, 0), (401, 300), (101, 300), (101, 0)]  # cols 101-400, rows 0-299
    aoi = AOIConfig(geometry={"type": "Polygon", "coordinates": [ring]}, crs="pixel")
    res = run_predict(bundle, scene, aoi, cluster_client, tmp_path / "dense.tif", confidence=False)
    assert res["tile_size"] == 256 and res["windows"] == 4  # densely evaluated: 256 px blocks
    with rasterio.open(res["path"]) as src:
        dense = src.read(1)
    core, per_patch, _ = predict_patch_window(
        str(bundle), scene, None, PixelWindow(0, 101, 300, 300), PixelWindow(0, 101, 300, 300), 4096, False
    )
    assert dense.shape == per_patch.shape == (300, 300)
    assert len(np.unique(per_patch)) > 1  # random weights still tell the land covers apart
    assert np.array_equal(dense, per_patch)
