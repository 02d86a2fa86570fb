"""Per-pixel baselines (RF, KNN, SVM) on tiny synthetic stores written with core.tiling.store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.baselines.estimators import evaluate_baseline, make_estimator, split_features, train_baseline
from core.errors import ConfigError
from core.tiling.store import StoreInfo, TileStore

CLASSES = (
    {"id": 2, "name": "forest", "color": "#00aa00"},
    {"id": 4, "name": "water", "color": "#0000ff"},
    {"id": 7, "name": "urban", "color": "#ff0000"},
)
MEANS = {2: (0.2, 0.6, 0.3), 4: (0.1, 0.1, 0.05), 7: (0.5, 0.45, 0.5)}


def separable_pixels(rng: np.random.Generator, labels: np.ndarray, bands: int = 3) -> np.ndarray:
    """Spectra (..., bands) drawn around each class's mean (0 = unlabelled: noise)."""
    x = rng.normal(0.3, 0.2, size=(*labels.shape, bands)).astype(np.float32)
    for cid, mean in MEANS.items():
        sel = labels == cid
        x[sel] = np.asarray(mean, np.float32) + rng.normal(0, 0.05, size=(int(sel.sum()), bands))
    return x


def write_store(path: Path, mode: str, n: dict[str, int], size: int = 8, seed: int = 0) -> Path:
    """A store of ``n[split]`` samples: tiles of size x size px (y map) or patches (centre label) of one modality."""
    rng = np.random.default_rng(seed)
    store = TileStore.create(path)
    for split, count in n.items():
        if mode == "tiles":
            y = rng.choice([0, 2, 4, 7], size=(count, size, size)).astype(np.uint8)
            x = separable_pixels(rng, y)
            store.create_split(split, count, {"s2": (size, size, 3, "float32")}, (size, size))
        else:
            y = rng.choice([2, 4, 7], size=count).astype(np.uint8)
            x = separable_pixels(rng, np.broadcast_to(y[:, None, None], (count, size, size)).copy())
            store.create_split(split, count, {"s2": (size, size, 3, "float32")}, ())
        store.array(split, "x_s2")[:] = x
        store.array(split, "y")[:] = y
        valid = np.ones(count, bool)
        valid[-1] = False  # an empty slot is never read
        store.array(split, "valid")[:] = valid
    store.set_info(
        StoreInfo(
            scene={}, config={}, mode=mode, modalities=("s2",), sample_size={"s2": size}, classes=CLASSES, dates=(None,)
        )
    )
    return path


def test_tile_features_are_labelled_pixels(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.zarr", "tiles", {"train": 5})
    store = TileStore(path)
    X, y = split_features(store, "train")
    y_all = store.array("train", "y")[:4]
    assert X.shape == (int((y_all > 0).sum()), 3)
    assert set(np.unique(y)) <= {2, 4, 7} and 0 not in y
    Xs, ys = split_features(store, "train", max_samples=20, seed=1)
    assert Xs.shape == (20, 3) and len(ys) == 20


@pytest.mark.parametrize("kind", ["rf", "knn", "svm"])
def test_baselines_beat_chance_on_separable_tiles(tmp_path: Path, kind: str) -> None:
    path = write_store(tmp_path / "t.zarr", "tiles", {"train": 12, "test": 6})
    m = evaluate_baseline(path, kind, max_train_samples=2000)
    assert m["overall_accuracy"] > 0.9  # chance is ~1/3
    assert m["kappa"] > 0.85
    assert m["baseline"]["kind"] == kind and m["baseline"]["n_train"] <= 2000
    store = TileStore(path)
    assert m["n_pixels"] == int((store.array("test", "y")[:5] > 0).sum())
    assert m["per_class"]["4"]["name"] == "water"


@pytest.mark.parametrize("features,n_features", [("center", 3), ("patch", 5 * 5 * 3)])
def test_patch_store_features(tmp_path: Path, features: str, n_features: int) -> None:
    path = write_store(tmp_path / "p.zarr", "patches", {"train": 90, "test": 30}, size=5)
    est, info = train_baseline(path, "knn", features=features)
    assert info["n_features"] == n_features and info["n_train"] == 89
    m = evaluate_baseline(path, "rf", features=features)
    assert m["n_pixels"] == 29 and m["overall_accuracy"] > 0.9


def test_unknown_kind_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="baseline 'xgb' is unknown; choose one of"):
        make_estimator("xgb")
    path = write_store(tmp_path / "t.zarr", "tiles", {"train": 4})
    with pytest.raises(ConfigError, match="split 'test' of store .* has no labelled samples"):
        evaluate_baseline(path, "rf")
