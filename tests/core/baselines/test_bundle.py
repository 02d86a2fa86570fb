"""Baseline bundles: fitted on a real tile store, mapped over a georeferenced raster on a real 2-worker cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from core.baselines.bundle import fit_baseline_bundle, is_baseline_bundle, load_baseline_bundle, window_features
from core.configs import AOIConfig, SamplingConfig, SplitConfig, TileJobConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.errors import ConfigError
from core.geo.windows import PixelWindow
from core.tiling.store import TileStore
from tests.conftest import write_raster
from tests.core.baselines.test_estimators import MEANS as STORE_MEANS
from tests.core.baselines.test_estimators import write_store

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
CLASSES = (ClassInfo(2, "forest", "#00aa00"), ClassInfo(4, "water", "#0000ff"), ClassInfo(7, "urban", "#ff0000"))
MEANS = {2: (300.0, 900.0, 400.0), 4: (150.0, 120.0, 60.0), 7: (700.0, 650.0, 720.0)}


def class_map(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Blocky land cover: 8 x 8 px cells of a random class (so a spatial split sees every class)."""
    cells = rng.choice([2, 4, 7], size=(-(-h // 8), -(-w // 8)))
    return np.kron(cells, np.ones((8, 8), dtype=int))[:h, :w].astype(np.uint8)


def spectra(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, h, w) float32 spectra around each class's mean (noise std 60, means >= 200 apart)."""
    x = np.zeros((3, *labels.shape), np.float32)
    for cid, mean in MEANS.items():
        sel = labels == cid
        x[:, sel] = np.asarray(mean, np.float32)[:, None] + rng.normal(0, 60, size=(3, int(sel.sum())))
    return x


def make_scene(tmp_path: Path, h: int = 56, w: int = 64, seed: int = 0) -> tuple[Scene, np.ndarray]:
    """A georeferenced one-modality scene (EPSG:32633, 10 m) with a label raster; ~5 % of labels left out."""
    rng = np.random.default_rng(seed)
    truth = class_map(h, w, rng)
    img = write_raster(tmp_path / "s2.tif", spectra(truth, rng), transform=T)
    lab = truth.copy()
    lab[rng.random(lab.shape) < 0.05] = 0
    labels = write_raster(tmp_path / "labels.tif", lab, transform=T, nodata=0)
    mod = Modality("s2", w, h, T, 3, "float32", (None,) * 3)
    wkt = rasterio.crs.CRS.from_epsg(32633).to_wkt()
    return Scene(
        "synth", True, wkt, (mod,), (Acquisition(None, {"s2": (str(img),)}, str(labels)),), CLASSES, "s2"
    ), truth


def tile(scene: Scene, client: Any, path: Path, mode: str = "patches", patch: int = 5) -> Path:
    from core.tiling.job import run_tile_job

    config = TileJobConfig(
        scene=scene.name,
        mode=mode,
        sampling=SamplingConfig(patch_size=patch, per_class=120),
        split=SplitConfig(block_size=16, fractions=(0.6, 0.2, 0.2), seed=1),
    )
    run_tile_job(config, scene, client, path)
    return path


def test_fit_saves_a_bundle_that_beats_chance(tmp_path: Path) -> None:
    store = write_store(tmp_path / "t.zarr", "tiles", {"train": 10, "test": 6})
    out = fit_baseline_bundle(store, tmp_path / "b", "rf", max_train_samples=200)
    assert is_baseline_bundle(out["bundle"]) and not is_baseline_bundle(tmp_path)
    est, meta = load_baseline_bundle(out["bundle"])
    assert meta.method == "rf" and meta.task == "baseline" and meta.class_ids == (2, 4, 7)
    assert meta.sample_size == {"s2": 1} and meta.train["n_train"] == 200 and meta.train["n_features"] == 3
    m = out["metrics"]["test"]
    assert m["overall_accuracy"] > 0.9 and m["kappa"] > 0.85  # chance is ~1/3
    n_expected = int((TileStore(store).array("test", "y")[:5] > 0).sum())
    assert m["n_pixels"] == m["scoring"]["n_test"] == n_expected
    assert list(est.predict(np.asarray([STORE_MEANS[c] for c in (2, 4, 7)], np.float32))) == [2, 4, 7]


def test_fit_refuses_bad_requests(tmp_path: Path) -> None:
    store = write_store(tmp_path / "t.zarr", "tiles", {"train": 4})
    with pytest.raises(ConfigError, match="features='patch' vectorises patches, but store .* holds 'tiles'"):
        fit_baseline_bundle(store, tmp_path / "b", "knn", features="patch")
    with pytest.raises(ConfigError, match="baseline method 'xgb' is unknown"):
        fit_baseline_bundle(store, tmp_path / "b", "xgb")
    out = fit_baseline_bundle(store, tmp_path / "b2", "knn")
    assert out["metrics"] == {}  # no test split: nothing scored, no error


@pytest.mark.cluster
def test_prediction_cog_on_scene_grid_classifies_every_pixel(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    scene, truth = make_scene(tmp_path)
    store = tile(scene, cluster_client, tmp_path / "p.zarr")
    fitted = fit_baseline_bundle(store, tmp_path / "rf", "rf", seed=0)
    assert fitted["metrics"]["test"]["overall_accuracy"] > 0.85
    # AOI: a polygon in map coordinates covering pixel rows 4..44, cols 6..58.
    x0, y0 = T[2], T[5]
    box = {
        "type": "Polygon",
        "coordinates": [
            [(x0 + 60, y0 - 40), (x0 + 580, y0 - 40), (x0 + 580, y0 - 440), (x0 + 60, y0 - 440), (x0 + 60, y0 - 40)]
        ],
    }
    res = run_predict(
        fitted["bundle"],
        scene,
        AOIConfig(geometry=box, crs="EPSG:32633"),
        cluster_client,
        tmp_path / "out" / "rf.tif",
        tile_size=16,
        batch_size=100,
        min_overview_size=16,
    )
    assert res["bbox"] == (4, 6, 40, 52) and res["windows"] == 3 * 4
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
        assert src.crs.to_epsg() == 32633
        assert src.transform == Affine(*T) @ Affine.translation(6, 4)
        assert src.nodata == 0 and src.tags()["CLASS_4"] == "water" and src.colormap(1)[4][:3] == (0, 0, 255)
        assert src.overviews(1) == [2]
    assert got.shape == (40, 52) and np.all(got > 0)  # every AOI pixel classified
    agree = float((got == truth[4:44, 6:58]).mean())
    assert agree > 0.85, f"the RF map agrees with the truth on only {agree:.2%} of the AOI"
    assert sum(res["class_pixels"].values()) == 40 * 52
    with rasterio.open(res["confidence_path"]) as src:
        conf = src.read(1)
    assert conf.min() >= 33 and conf.max() <= 100  # top of 3 class probabilities


@pytest.mark.cluster
def test_svm_on_patch_features_has_no_confidence(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    scene, truth = make_scene(tmp_path, 40, 40, seed=3)
    store = tile(scene, cluster_client, tmp_path / "p.zarr", patch=3)
    fitted = fit_baseline_bundle(store, tmp_path / "svm", "svm", features="patch")
    assert fitted["meta"]["sample_size"] == {"s2": 3} and fitted["meta"]["train"]["n_features"] == 27
    assert fitted["metrics"]["test"]["overall_accuracy"] > 0.8
    res = run_predict(fitted["bundle"], scene, AOIConfig(), cluster_client, tmp_path / "svm.tif", tile_size=32)
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    with rasterio.open(res["confidence_path"]) as src:
        conf = src.read(1)
    assert got.shape == (40, 40) and np.all(got > 0) and np.all(conf == 255)
    inner = (got == truth)[1:-1, 1:-1]  # edge pixels see zero-filled (off-raster) patch borders
    assert float(inner.mean()) > 0.8


@pytest.mark.cluster
def test_prediction_features_equal_the_store_features(tmp_path: Path, cluster_client: Any) -> None:
    """Train and predict see the same feature vector for a pixel, also with a 4x coarser second modality."""
    rng = np.random.default_rng(5)
    h, w = 48, 44
    truth = class_map(h, w, rng)
    fine = spectra(truth, rng)
    coarse = rng.random((2, h // 4, w // 4), dtype=np.float32) * 100
    tc = (40.0, 0.0, T[2], 0.0, -40.0, T[5])
    paths = {
        "rgb": write_raster(tmp_path / "rgb.tif", fine, transform=T),
        "hsi": write_raster(tmp_path / "hsi.tif", coarse, transform=tc),
    }
    labels = write_raster(tmp_path / "lab.tif", truth, transform=T, nodata=0)
    mods = (
        Modality("rgb", w, h, T, 3, "float32", (None,) * 3),
        Modality("hsi", w // 4, h // 4, tc, 2, "float32", (None,) * 2),
    )
    scene = Scene(
        "two",
        True,
        rasterio.crs.CRS.from_epsg(32633).to_wkt(),
        mods,
        (Acquisition(None, {k: (str(v),) for k, v in paths.items()}, str(labels)),),
        CLASSES,
        "rgb",
    )
    store_path = tile(scene, cluster_client, tmp_path / "two.zarr", patch=9)
    fitted = fit_baseline_bundle(store_path, tmp_path / "knn", "knn", features="patch")
    _, meta = load_baseline_bundle(fitted["bundle"])
    assert meta.sample_size == {"rgb": 9, "hsi": 3} and meta.train["n_features"] == 9 * 9 * 3 + 3 * 3 * 2
    store = TileStore(store_path)
    idx = store.valid_indices("train")[:40]
    xs, _ = store.read("train", idx)
    loc = store.array("train", "loc").get_orthogonal_selection((idx,))
    X_store = np.concatenate([xs[m].reshape(len(idx), -1) for m in ("rgb", "hsi")], axis=1)
    X_all, valid = window_features(scene, None, meta, PixelWindow(0, 0, h, w))
    assert valid.all()
    centres = (loc[:, 0] + loc[:, 2] // 2) * w + (loc[:, 1] + loc[:, 3] // 2)
    np.testing.assert_array_equal(X_all[centres], X_store)
