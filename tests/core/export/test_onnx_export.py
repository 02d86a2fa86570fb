"""ONNX export for QGIS Deepness: onnxruntime on a real Sentinel-2 tile, preprocessed the way Deepness does it,
equals Keras on the same tile normalised our way (max abs difference of probabilities < 1e-4); the declared tiling
keeps the context asked for under Deepness' own overlap arithmetic. (The stitched map: test_onnx_deepness.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.export.errors import UnsupportedModelError
from core.export.onnx_export import deepness_overlap_px, deepness_tiling, export_onnx
from core.models import get_model
from core.models.bundle import ModelMeta, save_bundle

TOL = 1e-4
NAMES = ("forest", "urban", "water")


def _meta(model: str, sample_size: dict[str, int], stats: dict[str, dict[str, list[float]]]) -> ModelMeta:
    return ModelMeta(
        model=model,
        task=get_model(model).task,
        modalities=tuple(sample_size),
        sample_size=sample_size,
        class_ids=(1, 3, 8),
        class_names=NAMES,
        class_colors=("#00ff00", "#ff0000", "#0000ff"),
        band_stats=stats,
        scene="strzegom",
        train_run_id=7,
        extra={"model_params": {"width": 4, "depth": 2}} if model == "unet" else {},
    )


@pytest.fixture(scope="module")
def tile(shared_data_dir: Path) -> tuple[np.ndarray, dict[str, dict[str, list[float]]]]:
    """A 32 x 32 x 10 uint16 tile of strzegom and the image's band statistics."""
    with rasterio.open(shared_data_dir / "strzegom" / "image_20210619.tif") as src:
        full = src.read().astype(np.float64)
        x = src.read(window=Window(150, 200, 32, 32))
    stats = {"s2": {"mean": full.mean(axis=(1, 2)).tolist(), "std": full.std(axis=(1, 2)).tolist()}}
    return np.moveaxis(x, 0, -1), stats


@pytest.fixture(scope="module")
def shared_data_dir() -> Path:
    from tests.conftest import SHARED_DATA

    return SHARED_DATA


def _deepness_run(path: Path, raw: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """What Deepness does: /255, standardise with the metadata, NHWC -> NCHW, run, read the metadata."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    md = {k: json.loads(v) for k, v in sess.get_modelmeta().custom_metadata_map.items()}
    x = np.float32(raw[None] * 1.0 / 255.0)
    x = (x - np.asarray(md["standardization_mean"], np.float32)) / np.asarray(md["standardization_std"], np.float32)
    (inp,) = sess.get_inputs()
    assert inp.shape[1:] == [raw.shape[-1], raw.shape[0], raw.shape[1]]  # NCHW, fixed tile, free batch
    out = sess.run(None, {inp.name: np.transpose(x, (0, 3, 1, 2)).astype(np.float32)})
    assert len(out) == 1
    return np.transpose(out[0][0], (1, 2, 0)), md


@pytest.mark.shared_data
def test_unet_matches_keras_on_a_real_tile(tmp_path: Path, tile: tuple) -> None:
    import keras

    raw, stats = tile
    raw = raw.copy()
    raw[5:7, 5:9] = 0  # nodata (0 in every band, what QGIS gives beyond the layer): the band mean, as ours
    keras.utils.set_random_seed(4)
    model = get_model("unet").builder((32, 32, 10), 3, width=4, depth=2, dropout=0.0)
    meta = _meta("unet", {"s2": 32}, stats)
    bundle = save_bundle(tmp_path / "unet", model, meta)
    res = export_onnx(bundle, tmp_path / "unet.onnx", tile_size=32, overlap_px=8, resolution_m=10.0)
    got, md = _deepness_run(res.path, raw)
    x = meta.normalise("s2", raw)
    x[5:7, 5:9] = 0.0
    # The graph appends the receptive-field radius (23 px for depth 2, on the pooling grid of 4: 24) of band mean
    # below and right of the tile, so a tile past the raster's edge sees what our prediction sees there.
    want = model.predict(np.pad(x, ((0, 24), (0, 24), (0, 0)))[None], verbose=0)[0, :32, :32]
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() < TOL
    assert md["model_type"] == "Segmentor" and md["class_names"] == {"0": "forest", "1": "urban", "2": "water"}
    assert md["class_ids"] == [1, 3, 8] and md["resolution"] == 1000.0
    assert md["tile_size"] == md["tiles_size"] == 32 and md["tiles_overlap"] == 50  # 2 x 8 px of 32
    assert md["seg_thresh"] == 0 and md["seg_small_segment"] == 0  # argmax everywhere, no median filter
    assert md["workbench_seams"] == "crop" and md["workbench_context_px"] == 8  # 8 px < the radius of 23 px
    assert md["standardization_mean"] == pytest.approx([m / 255 for m in stats["s2"]["mean"]])


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["patch_cnn", "two_stream_rgb"])
def test_patch_models_become_per_pixel_segmentors(tmp_path: Path, tile: tuple, name: str) -> None:
    import keras

    raw, stats = tile
    p, mod = 5, get_model(name).modality or "s2"
    bands = [0, 1, 2] if mod == "rgb" else list(range(10))  # B02, B03, B04 for the RGB branch
    raw = raw[..., bands]
    stats = {mod: {k: [v[b] for b in bands] for k, v in stats["s2"].items()}}
    keras.utils.set_random_seed(5)
    if name == "patch_cnn":
        model = get_model(name).builder((p, p, len(bands)), 3, width=4, dropout=0.0)
    else:
        model = get_model(name).builder({mod: (p, p, len(bands))}, 3, width=2, dense=(16,), dropout=0.0, blocks=2)
    meta = _meta(name, {mod: p}, stats)
    bundle = save_bundle(tmp_path / name, model, meta)
    res = export_onnx(bundle, tmp_path / f"{name}.onnx", tile_size=32)
    got, md = _deepness_run(res.path, raw)
    # Our rule (core.inference.predict): the patch centred on each pixel, zero (the band mean) beyond the tile.
    x = np.pad(meta.normalise(mod, raw), ((p // 2, p // 2), (p // 2, p // 2), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(0, 1)).transpose(0, 1, 3, 4, 2)
    want = model.predict(patches.reshape(-1, p, p, len(bands)), verbose=0).reshape(32, 32, 3)
    assert np.abs(got - want).max() < TOL
    assert md["tiles_overlap"] == 13  # 2 x (p // 2) = 4 px of 32, rounded up to a whole percent
    assert "resolution" not in md and res.bands == len(bands)


def test_unsupported_models_say_why(tmp_path: Path) -> None:
    import keras

    stats = {"s2": {"mean": [0.0] * 3, "std": [1.0] * 3}}
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="sigmoid")]
    )
    bundle = save_bundle(tmp_path / "ml", model, _meta("resnet50", {"s2": 8}, stats))
    with pytest.raises(UnsupportedModelError, match=r"\(multilabel\) makes no per-pixel map.*no such model type"):
        export_onnx(bundle, tmp_path / "ml.onnx")
    two = {"rgb": {"mean": [0.0] * 3, "std": [1.0] * 3}, "hsi": {"mean": [0.0] * 4, "std": [1.0] * 4}}
    bundle = save_bundle(tmp_path / "ts", model, _meta("two_stream", {"rgb": 8, "hsi": 2}, two))
    with pytest.raises(UnsupportedModelError, match="exactly one input"):
        export_onnx(bundle, tmp_path / "ts.onnx")
    assert not (tmp_path / "ml.onnx").exists() and not (tmp_path / "ts.onnx").exists()


@pytest.mark.parametrize(
    ("radius", "align", "tile", "overlap"),
    [(107, 16, None, None), (107, 16, 320, None), (51, 16, None, None), (23, 4, 96, None), (2, 1, 32, None),
     (107, 16, 256, 32), (7, 1, None, None)],
)  # fmt: skip
def test_declared_tiling_keeps_the_context_in_deepness(
    radius: int, align: int, tile: int | None, overlap: int | None
) -> None:
    """Deepness turns the whole-percent overlap into pixels its own way and keeps half of it per side: the
    declared tiling keeps the receptive-field radius (or the overlap asked for), on the pooling grid."""
    t = deepness_tiling(radius, align, 64, tile, overlap)
    o = deepness_overlap_px(t.tile, t.percent)
    assert o // 2 == t.context >= (radius if overlap is None else overlap)
    assert (t.tile - o) % align == 0 and t.tile % align == 0 and 0 <= t.percent <= 99
    assert t.exact == (overlap is None)
    if tile is None:
        assert t.stride >= t.tile // 2 and t.tile <= 1024  # the core is at least half the tile
    else:
        assert t.tile == tile


def test_tilings_that_cannot_keep_the_context_say_what_to_do() -> None:
    with pytest.raises(UnsupportedModelError, match=r"tile of 64 px cannot keep 107 px.*at least 256 px"):
        deepness_tiling(107, 16, 64, tile_size=64)
    with pytest.raises(UnsupportedModelError, match="not a multiple of 16"):
        deepness_tiling(107, 16, 64, tile_size=100)
    with pytest.raises(UnsupportedModelError, match=r"no tile of 64 to 64 px keeps 1 px.*give a tile size"):
        deepness_tiling(1, 64, 8, longest=64)  # a 64 px pooling grid leaves no stride inside 64 px tiles
