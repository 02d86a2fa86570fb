"""Worker-side inference: chunks equal single windows, dense patch evaluation equals the per-patch path on a real
scene, the bundle cache keys on path and content, readers stay open, and the chunk plan."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.geo.windows import PixelWindow
from core.models.bundle import ModelMeta, save_bundle
from tests.core.inference.test_predict import dense_bundle, make_scene

keras = pytest.importorskip("keras")


def test_dense_chunk_equals_one_task_per_window(tmp_path: Path) -> None:
    from core.inference.predict import read_window_for
    from core.inference.windows import predict_dense_chunk, predict_dense_window

    data = np.random.default_rng(0).random((3, 50, 60), dtype=np.float32)
    data[:, 20, 25] = -1
    scene = make_scene(tmp_path, data, nodata=-1)
    bundle, _, _ = dense_bundle(tmp_path, 3)
    cores = [PixelWindow(r, c, min(16, 50 - r), min(16, 60 - c)) for r in (0, 16, 32, 48) for c in (0, 16)]
    pairs = [(read_window_for(c, 24, 4, 50, 60), c) for c in cores]
    got = predict_dense_chunk(str(bundle), scene, None, pairs, confidence=True)
    for (read, core), (g_core, g_cls, g_conf) in zip(pairs, got, strict=True):
        _, cls, conf = predict_dense_window(str(bundle), scene, None, read, core, 1, True)
        assert g_core == core and g_cls.shape == core.shape
        assert np.array_equal(g_cls, cls) and np.array_equal(g_conf, conf)
    assert got[3][0] == PixelWindow(16, 16, 16, 16) and got[3][1][20 - 16, 25 - 16] == 0  # the nodata pixel


def _tie_free(per_patch_probs: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    top2 = np.sort(per_patch_probs, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) > tol


@pytest.mark.shared_data
def test_dense_patch_equals_per_patch_on_chiapas(tmp_path: Path, home: Path, db_url: str, shared_data: Path) -> None:
    from core.data.samples import register_samples
    from core.inference.windows import predict_patch_dense_window, predict_patch_window
    from core.models.patch_fcn import build_patch_fcn
    from db.scenes import SceneStore

    (scene,) = register_samples(shared_data, SceneStore(db_url), home, only=["chiapas_landsat"])
    mod = scene.primary
    with rasterio.open(scene.acquisitions[0].files[mod.name][0]) as ds:
        x = ds.read().reshape(ds.count, -1).astype(np.float64)
    stats = {mod.name: {"mean": x.mean(1).tolist(), "std": x.std(1).tolist()}}
    keras.utils.set_random_seed(11)
    model = build_patch_fcn((9, 9, mod.band_count), len(scene.classes), width=8)
    meta = ModelMeta(
        model="patch_fcn",
        task="patch",
        modalities=(mod.name,),
        sample_size={mod.name: 9},
        class_ids=tuple(c.id for c in scene.classes),
        class_names=tuple(c.name for c in scene.classes),
        class_colors=tuple(c.color for c in scene.classes),
        band_stats=stats,
        scene=scene.name,
    )
    bundle = str(save_bundle(tmp_path / "fcn", model, meta))
    core = PixelWindow(0, 0, mod.height, mod.width)
    _, per_patch, _ = predict_patch_window(bundle, scene, None, core, core, 4096, False)
    _, dense, _ = predict_patch_dense_window(bundle, scene, None, core, core, 1, False)
    assert dense.shape == per_patch.shape == (250, 250)
    assert len(np.unique(per_patch)) > 1  # not a constant map
    differ = dense != per_patch
    if differ.any():  # float ties only: recompute the per-patch probabilities of the differing pixels
        from core.inference.windows import read_bands

        rows, cols = np.nonzero(differ)
        padded = read_bands(scene.acquisitions[0], mod, -4, -4, 258, 258)
        patches = np.stack([meta.normalise(mod.name, padded[r : r + 9, c : c + 9]) for r, c in zip(rows, cols)])
        assert not _tie_free(np.asarray(model.predict_on_batch(patches))).any()


def _tiny_bundle(tmp_path: Path, name: str, seed: int) -> Path:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((None, None, 2)), keras.layers.Conv2D(2, 1, activation="softmax")])
    meta = ModelMeta(
        model="tiny",
        task="dense",
        modalities=("s2",),
        sample_size={"s2": 8},
        class_ids=(1, 2),
        class_names=("a", "b"),
        class_colors=("#000000", "#ffffff"),
        band_stats={"s2": {"mean": [0, 0], "std": [1, 1]}},
        scene="t",
    )
    return save_bundle(tmp_path / name, model, meta)


def test_bundle_cache_keys_on_path_and_content(tmp_path: Path) -> None:
    from core.inference.runner import cached_runner
    from core.models.bundle import cache_info

    a = _tiny_bundle(tmp_path, "a", 1)
    first = cached_runner(a)
    assert cached_runner(a) is first
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    assert cached_runner(copy) is first  # same content under another path: not loaded again
    _tiny_bundle(tmp_path, "a", 2)  # retrained in place
    assert cached_runner(a) is not first
    paths: dict[str, Any] = cache_info()
    assert paths[str(copy.resolve())] != paths[str(a.resolve())]
    assert cached_runner(a).probabilities([np.ones((1, 3, 4, 2), np.float32)]).shape == (1, 3, 4, 2)


def test_reader_stays_open_until_the_file_changes(tmp_path: Path) -> None:
    from core.data.reader import cached_reader
    from tests.conftest import write_raster

    scene = make_scene(tmp_path, np.zeros((2, 8, 8), np.float32))
    mod, paths = scene.primary, scene.acquisitions[0].files[scene.primary.name]
    reader = cached_reader(paths, mod)
    assert cached_reader(paths, mod) is reader
    write_raster(Path(paths[0]), np.ones((2, 8, 9), np.float32))  # rewritten: another size
    again = cached_reader(paths, mod)
    assert again is not reader and again.read(PixelWindow(0, 0, 2, 2))[0].max() == 1


def test_chunk_plan() -> None:
    from core.inference.plan import group_pairs, tiles_per_side

    assert tiles_per_side(256, 177) == 2 and tiles_per_side(256, 177, chunk_px=256) == 1
    assert tiles_per_side(1024, 800) == 1
    cores = [PixelWindow(r, c, 10, 10) for r in range(5, 45, 10) for c in range(5, 35, 10)]
    pairs = [(c, c) for c in cores]
    chunks = group_pairs(pairs, (5, 5), 10, 2)
    assert [len(ch) for ch in chunks] == [4, 2, 4, 2]
    assert [p[1] for ch in chunks for p in ch] == sorted(
        cores, key=lambda w: ((w.row_off - 5) // 20, (w.col_off - 5) // 20, w.row_off, w.col_off)
    )
    with pytest.raises(ValueError, match="tile 0 and core 5 must be >= 1 px"):
        tiles_per_side(0, 5)
