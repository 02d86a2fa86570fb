"""The exported ONNX model run the way QGIS Deepness runs it gives the workbench's own map.

``deepness_map`` follows the plugin (PUTvision/qgis-plugin-deepness, processing "Entire layer" of a raster at the
model's resolution): ``common/processing_overlap.py`` (overlap in pixels from the percent),
``processing/extent_utils.py`` (the extent extended right and down to ``N * stride + tile``; QGIS gives 0 beyond the
layer), ``processing/models/model_base.py`` (/255, standardisation, NHWC -> NCHW),
``map_processor/map_processor_segmentation.py`` (probability threshold, argmax + 1, median blur of
``seg_small_segment``) and ``processing/tile_params.py`` (each tile written without half the overlap on every side
but the extent's edges). onnxruntime runs the model, as in the plugin. The workbench's map is a real prediction
(:func:`core.inference.predict.run_predict`, exact seams, on the session's LocalCluster) of a U-Net of width 8 and
depth 4 (receptive-field radius 107 px, the issue's case), and of a patch CNN, over a strzegom scene (seeded
weights: the test is about tiling and stitching, not accuracy; the map must hold several classes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.configs import AOIConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.export.onnx_export import deepness_overlap_px, export_onnx
from core.models import get_model
from core.models.bundle import ModelMeta, save_bundle

keras = pytest.importorskip("keras")

NAMES = ("forest", "crops", "urban", "water", "quarries")
CLASSES = tuple(ClassInfo(i * 2 + 1, n, "#808080") for i, n in enumerate(NAMES))  # ids 1, 3, 5, 7, 9


def _extended(n: int, tile: int, stride: int) -> int:
    """``extent_utils.calculate_extended_processing_extent`` along one axis (whole layer: starts at its edge)."""
    if n <= tile:
        return tile
    return n + (stride - (n - tile) % stride) % stride


def _copy_slices(i: int, count: int, start: int, tile: int, stride: int) -> tuple[slice, slice]:
    """``TileParams.get_slice_on_full_image_for_copying`` / ``..._on_tile_image_...`` along one axis (no offset)."""
    half = max((tile - stride) // 2, 0)
    lo, hi = start + half, start + tile - half - 1
    if i == 0:
        lo -= half
    if i == count - 1:
        hi += half
    return slice(lo, hi + 1), slice(lo - start, hi + 1 - start)


def deepness_map(onnx_path: Path, raw: np.ndarray, batch_size: int = 4) -> tuple[np.ndarray, dict[str, Any]]:
    """Deepness' segmentation map of ``raw`` (rows, cols, bands) with the model's own metadata: class ids (uint8)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    md = {k: json.loads(v) for k, v in sess.get_modelmeta().custom_metadata_map.items()}
    tile = int(md["tile_size"])
    stride = tile - deepness_overlap_px(tile, int(md["tiles_overlap"]))
    h, w = raw.shape[:2]
    eh, ew = _extended(h, tile, stride), _extended(w, tile, stride)
    image = np.zeros((eh, ew, raw.shape[2]), raw.dtype)  # beyond the layer QGIS gives 0
    image[:h, :w] = raw
    ny, nx = round((eh - tile) / stride) + 1, round((ew - tile) / stride) + 1
    full = np.zeros((eh, ew), np.uint8)
    mean = np.asarray(md["standardization_mean"])
    std = np.asarray(md["standardization_std"])
    cells = [(y, x) for y in range(ny) for x in range(nx)]
    for b in range(0, len(cells), batch_size):
        batch = cells[b : b + batch_size]
        tiles = np.array([image[y * stride : y * stride + tile, x * stride : x * stride + tile] for y, x in batch])
        x_in = (np.float32(tiles * 1.0 / 255.0) - mean) / std  # model_base.preprocessing
        (out,) = sess.run(None, {sess.get_inputs()[0].name: np.transpose(x_in, (0, 3, 1, 2)).astype(np.float32)})
        out[out < float(md["seg_thresh"])] = 0.0
        result = np.argmax(out, axis=1) + 1
        for (y, x), res in zip(batch, result):
            rows, trows = _copy_slices(y, ny, y * stride, tile, stride)
            cols, tcols = _copy_slices(x, nx, x * stride, tile, stride)
            full[rows, cols] = res[trows, tcols]
    assert int(md["seg_small_segment"]) // 2 * 2 + 1 == 1  # cv2.medianBlur with ksize 1: the map as it is
    ids = np.asarray([0, *md["class_ids"]], np.uint8)
    return ids[full[:h, :w]], md


def _bundle(folder: Path, name: str, stats: dict[str, Any]) -> Path:
    """A seeded bundle of ``name`` for 10-band strzegom: a U-Net of width 8, depth 4 (radius 107 px) or a patch CNN
    on 5 px patches."""
    keras.utils.set_random_seed(20)
    if name == "unet":
        model = get_model("unet").builder((64, 64, 10), len(CLASSES), width=8, depth=4, dropout=0.0)
        size, params = 64, {"width": 8, "depth": 4}
    else:
        model = get_model(name).builder((5, 5, 10), len(CLASSES), width=4, dropout=0.0)
        size, params = 5, {"width": 4}
    meta = ModelMeta(
        model=name,
        task=get_model(name).task,
        modalities=("s2",),
        sample_size={"s2": size},
        class_ids=tuple(c.id for c in CLASSES),
        class_names=NAMES,
        class_colors=tuple(c.color for c in CLASSES),
        band_stats=stats,
        scene="strzegom",
        extra={"model_params": params},
    )
    return save_bundle(folder / name, model, meta)


@pytest.fixture(scope="module")
def strzegom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, np.ndarray, dict[str, Path]]:
    """The strzegom scene of 2021-06-19 (401 x 401 px, 10 bands) and seeded bundles with its statistics."""
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "strzegom" / "image_20210619.tif"
    with rasterio.open(path) as src:
        data = src.read()
        mod = Modality("s2", src.width, src.height, tuple(src.transform)[:6], src.count, "uint16", (None,) * src.count)
        wkt = src.crs.to_wkt()
    scene = Scene("strzegom", True, wkt, (mod,), (Acquisition(None, {"s2": (str(path),)}),), CLASSES, "s2")
    stats = {"s2": {"mean": data.mean(axis=(1, 2)).tolist(), "std": data.std(axis=(1, 2)).tolist()}}
    folder = tmp_path_factory.mktemp("bundles")
    return scene, np.moveaxis(data, 0, -1), {name: _bundle(folder, name, stats) for name in ("unet", "patch_cnn")}


@pytest.mark.shared_data
@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize(("name", "tile_size"), [("unet", None), ("unet", 320), ("patch_cnn", None)])
def test_deepness_map_is_the_workbench_map(
    tmp_path: Path, strzegom: tuple, cluster_client: Any, name: str, tile_size: int | None
) -> None:
    """U-Net: the default tiling (one 976 px tile over the 401 px scene) and 320 px tiles (2 x 2 tiles stitched,
    the last ones past the raster's edge); patch CNN: 64 px tiles (7 x 7): >= 99.9 % of pixels equal to the
    workbench's map. (The pixels that differ lie around the scene's three all-zero pixels, nodata to the export.)"""
    from core.inference.predict import run_predict

    scene, raw, bundles = strzegom
    ours = run_predict(bundles[name], scene, AOIConfig(), cluster_client, tmp_path / "map.tif", confidence=False)
    with rasterio.open(ours["path"]) as src:
        want = src.read(1)
    res = export_onnx(bundles[name], tmp_path / "m.onnx", tile_size=tile_size, resolution_m=10.0)
    got, md = deepness_map(res.path, raw)
    radius = 107 if name == "unet" else 2
    assert md["workbench_receptive_field_px"] == radius and md["workbench_seams"] == "exact"
    assert md["workbench_context_px"] >= radius and res.tiling.stride % res.tiling.align == 0
    shares = np.bincount(want.ravel(), minlength=10)[[c.id for c in CLASSES]] / want.size
    assert (shares > 0.02).sum() >= 2, shares  # a map of several classes, not one
    agree = float((got == want).mean())
    assert agree >= 0.999, f"{agree:.5f} of pixels agree; {int((got != want).sum())} differ"
