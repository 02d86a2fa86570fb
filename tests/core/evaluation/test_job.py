"""Evaluation of model bundles on stores, of baselines, and of prediction maps against label rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from core.configs import AOIConfig, EvaluateJobConfig
from core.data.cog import finalize_cog, open_tiled, tiled_profile, write_class_metadata
from core.errors import ConfigError, GridMismatchError
from core.evaluation.job import evaluate_bundle, evaluate_prediction, run_evaluate
from core.models.bundle import ModelMeta, save_bundle
from core.tasks.metrics import classification_metrics
from core.tiling.store import TileStore
from tests.conftest import write_raster
from tests.core.baselines.test_estimators import CLASSES, write_store

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
IDS = [c["id"] for c in CLASSES]
NAMES = [c["name"] for c in CLASSES]


def meta(task: str, size: int) -> ModelMeta:
    return ModelMeta(
        model="tiny",
        task=task,
        modalities=("s2",),
        sample_size={"s2": size},
        class_ids=tuple(IDS),
        class_names=tuple(NAMES),
        class_colors=tuple(c["color"] for c in CLASSES),
        band_stats={"s2": {"mean": [0.3] * 3, "std": [0.2] * 3}},
        scene="t",
    )


@pytest.mark.parametrize("task,mode", [("dense", "tiles"), ("patch", "patches")])
def test_evaluate_bundle_matches_direct_prediction(tmp_path: Path, task: str, mode: str) -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    if task == "dense":
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, activation="softmax")])
    else:
        model = keras.Sequential(
            [keras.Input((5, 5, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
        )
    size = 8 if task == "dense" else 5
    m = meta(task, size)
    bundle = save_bundle(tmp_path / "b", model, m)
    store_path = write_store(tmp_path / "s.zarr", mode, {"train": 3, "test": 21}, size=size)
    got = evaluate_bundle(bundle, store_path, batch_size=4)
    store = TileStore(store_path)
    xs, y = store.read("test", store.valid_indices("test"))
    pred = np.asarray(IDS)[np.asarray(model.predict_on_batch(m.normalise("s2", xs["s2"]))).argmax(-1)]
    want = classification_metrics(y, pred, IDS, NAMES)
    assert got["confusion_matrix"] == want["confusion_matrix"]
    assert got["overall_accuracy"] == pytest.approx(want["overall_accuracy"])
    assert got["evaluation"]["samples"] == 20
    assert got["n_pixels"] == (int((y > 0).sum()) if task == "dense" else 20)


def test_evaluate_bundle_wrong_mode(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, activation="softmax")])
    bundle = save_bundle(tmp_path / "b", model, meta("dense", 8))
    store_path = write_store(tmp_path / "s.zarr", "patches", {"test": 4}, size=8)
    with pytest.raises(ConfigError, match="is a 'dense' model but store .* holds 'patches'"):
        evaluate_bundle(bundle, store_path)


def write_map(path: Path, data: np.ndarray, transform: Affine) -> Path:
    tmp = path.with_suffix(".tmp.tif")
    with open_tiled(tmp, **tiled_profile(data.shape[1], data.shape[0], transform, "EPSG:32633", blocksize=16)) as d:
        write_class_metadata(d, IDS, NAMES, [c["color"] for c in CLASSES])
        d.write(data, 1)
    return finalize_cog(tmp, path)


def test_evaluate_prediction_on_sub_window_with_mask(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 2, 4, 7, 255], size=(40, 50)).astype(np.uint8)
    lab_path = write_raster(tmp_path / "labels.tif", labels, transform=T, nodata=255)
    truth = labels[5:35, 10:40]
    pred = np.where(rng.random(truth.shape) < 0.8, truth, rng.choice(IDS, size=truth.shape)).astype(np.uint8)
    pred[pred == 255] = 0  # map nodata where the labels are nodata
    pred[0, :5] = 0  # a few unpredicted pixels
    map_path = write_map(tmp_path / "map.tif", pred, Affine(*T) @ Affine.translation(10, 5))
    got = evaluate_prediction(map_path, lab_path)
    want = classification_metrics(np.where(truth == 255, 0, truth), pred, IDS, NAMES)
    assert got["confusion_matrix"] == want["confusion_matrix"] and got["n_unpredicted"] == want["n_unpredicted"]
    assert got["per_class"]["7"]["name"] == "urban"
    # Mask: the left half of the map (label cols 10..25), given in map coordinates.
    x0, y0 = T[2], T[5]
    half = {
        "type": "Polygon",
        "coordinates": [
            [(x0 + 100, y0 - 50), (x0 + 250, y0 - 50), (x0 + 250, y0 - 350), (x0 + 100, y0 - 350), (x0 + 100, y0 - 50)]
        ],
    }
    masked = evaluate_prediction(map_path, lab_path, AOIConfig(geometry=half, crs="EPSG:32633"))
    t_half = np.where(truth == 255, 0, truth)[:, :15]
    want_half = classification_metrics(t_half, pred[:, :15], IDS)
    assert masked["confusion_matrix"] == want_half["confusion_matrix"] and masked["evaluation"]["masked"]
    px = evaluate_prediction(
        map_path,
        lab_path,
        AOIConfig(
            geometry={"type": "Polygon", "coordinates": [[(10, 5), (25, 5), (25, 35), (10, 35), (10, 5)]]}, crs="pixel"
        ),
    )
    assert px["confusion_matrix"] == want_half["confusion_matrix"]


def test_evaluate_prediction_off_grid(tmp_path: Path) -> None:
    lab_path = write_raster(tmp_path / "labels.tif", np.ones((20, 20), np.uint8), transform=T)
    map_path = write_map(tmp_path / "map.tif", np.ones((10, 10), np.uint8) * 2, Affine(*T) @ Affine.translation(2.5, 3))
    with pytest.raises(GridMismatchError, match=r"origin falls at label pixel \(3.000, 2.500\)"):
        evaluate_prediction(map_path, lab_path)


def test_the_evaluate_kind_stores_the_baselines_metrics(tmp_path: Path, db_url: str) -> None:
    from db.runs import RunTracker
    from jobs.engine_kinds import run_evaluate as evaluate_kind
    from jobs.runner import execute

    store_path = write_store(tmp_path / "s.zarr", "tiles", {"train": 8, "test": 4})
    config = EvaluateJobConfig(method="rf", store=str(store_path), max_train_samples=500)
    metrics = run_evaluate(config)
    run_id = execute(config, evaluate_kind, db_url=db_url, client=None)
    stored = RunTracker(db_url).get(run_id).metrics
    assert stored["overall_accuracy"] == pytest.approx(metrics["overall_accuracy"]) and stored["overall_accuracy"] > 0.9
    assert stored["baseline"]["kind"] == "rf"


def test_evaluate_config_needs_inputs() -> None:
    with pytest.raises(ValueError, match="method='prediction' needs labels"):
        EvaluateJobConfig(method="prediction", prediction="/p.tif")
    with pytest.raises(ValueError, match="method='svm' needs store"):
        EvaluateJobConfig(method="svm")
    c = EvaluateJobConfig(method="model", model="/b", store="/s.zarr")
    assert EvaluateJobConfig.model_validate_json(c.model_dump_json()) == c


# ---- multi-label scene classifiers -------------------------------------------------------------------------------
ML_CLASSES = (
    {"id": 1, "name": "water", "color": "#0000ff"},
    {"id": 2, "name": "forest", "color": "#00ff00"},
    {"id": 5, "name": "urban", "color": "#ff0000"},
)
ML_IDS = [c["id"] for c in ML_CLASSES]


def multilabel_case(tmp_path: Path, fraction_in_meta: float | None = None) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A bundle whose predictions are known and a tile store of 13 test tiles (one unlabelled).

    The model is the mean of each band through a sigmoid; band k of tile i is raw 100 +- 40, which the bundle's
    statistics (mean 100, std 10) normalise to +-4, so class k is predicted (p = 0.98 vs 0.02) exactly where
    ``pred[i, k]`` is set, and only if the inputs are normalised as in training.

    Returns:
        (bundle, store, labels (13, 4, 4), pred (13, 3) bool).
    """
    keras = pytest.importorskip("keras")
    from tests.stores import write_store as write_sample_store

    rng = np.random.default_rng(4)
    n, k = 13, len(ML_IDS)
    labels = rng.choice([0, 1, 2, 5], p=[0.1, 0.5, 0.3, 0.1], size=(n, 4, 4)).astype(np.uint8)
    labels[3] = 0  # no labelled pixel: left out of the scores
    pred = rng.random((n, k)) < 0.5
    x = np.broadcast_to((100 + 40 * (2 * pred - 1.0))[:, None, None, :], (n, 4, 4, k)).astype(np.float32)
    store = write_sample_store(
        tmp_path / "ml.zarr",
        {"train": (x[:2], labels[:2]), "test": (x, labels)},
        "tiles",
        ML_CLASSES,
        band_mean=100.0,
        band_std=10.0,
    )
    model = keras.Sequential(
        [keras.Input((4, 4, k)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(k, activation="sigmoid")]
    )
    model.layers[-1].set_weights([np.eye(k, dtype="float32"), np.zeros(k, "float32")])
    m = ModelMeta(
        model="resnet50",
        task="multilabel",
        modalities=("s2",),
        sample_size={"s2": 4},
        class_ids=tuple(ML_IDS),
        class_names=tuple(c["name"] for c in ML_CLASSES),
        class_colors=tuple(c["color"] for c in ML_CLASSES),
        band_stats={"s2": {"mean": [100.0] * k, "std": [10.0] * k}},
        scene="t",
        extra={} if fraction_in_meta is None else {"label_fraction": fraction_in_meta},
    )
    return save_bundle(tmp_path / "ml-bundle", model, m), store, labels, pred


def reference_targets(labels: np.ndarray, fraction: float) -> np.ndarray:
    """Multi-hot targets written out tile by tile: classes covering >= fraction of the labelled pixels."""
    out = np.zeros((len(labels), len(ML_IDS)), dtype=int)
    for i, tile in enumerate(labels):
        labelled = np.isin(tile, ML_IDS).sum()
        for j, cid in enumerate(ML_IDS):
            share = (tile == cid).sum() / labelled if labelled else 0
            out[i, j] = share > 0 and share >= fraction
    return out


def test_evaluate_bundle_scores_multilabel_tiles_like_scikit_learn(tmp_path: Path) -> None:
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    bundle, store, labels, pred = multilabel_case(tmp_path)
    got = evaluate_bundle(bundle, store, batch_size=4, label_fraction=0.25)
    keep = np.isin(labels.reshape(len(labels), -1), ML_IDS).any(axis=1)
    t, p = reference_targets(labels, 0.25)[keep], pred[keep].astype(int)
    assert 0 < t.sum() < t.size and (t != p).any()  # a case with both hits and misses
    for avg in ("micro", "macro"):
        prec, rec, f1, _ = precision_recall_fscore_support(t, p, average=avg, zero_division=0)
        assert (got[f"{avg}_precision"], got[f"{avg}_recall"], got[f"{avg}_f1"]) == pytest.approx((prec, rec, f1))
    _, _, f1s, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    assert [got["per_class"][str(c)]["f1"] for c in ML_IDS] == pytest.approx(list(f1s))
    assert [got["per_class"][str(c)]["support"] for c in ML_IDS] == list(support)
    assert [got["per_class"][str(c)]["name"] for c in ML_IDS] == ["water", "forest", "urban"]
    assert got["subset_accuracy"] == pytest.approx(accuracy_score(t, p))
    assert got["hamming_loss"] == pytest.approx(hamming_loss(t, p))
    assert got["samples"] == 12 and got["evaluation"]["samples"] == 13  # the unlabelled tile is not scored
    assert got["task"] == "multilabel" and got["label_fraction"] == 0.25 and got["class_ids"] == ML_IDS
    assert "overall_accuracy" not in got


def test_evaluate_bundle_multilabel_fraction_from_meta_or_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle, store, labels, _ = multilabel_case(tmp_path / "a", fraction_in_meta=0.4)
    from_meta = evaluate_bundle(bundle, store)
    assert from_meta["label_fraction"] == 0.4
    assert from_meta["micro_f1"] == evaluate_bundle(bundle, store, label_fraction=0.4)["micro_f1"]
    assert from_meta["micro_f1"] != evaluate_bundle(bundle, store, label_fraction=0.05)["micro_f1"]
    bare, store_b, _, _ = multilabel_case(tmp_path / "b")
    with caplog.at_level("WARNING", logger="core.evaluation.job"):
        assert evaluate_bundle(bare, store_b)["label_fraction"] == 0.05  # TrainJobConfig's default
    assert "does not record the label_fraction" in caplog.text


def test_evaluate_bundle_multilabel_needs_a_tile_store(tmp_path: Path) -> None:
    bundle, _, _, _ = multilabel_case(tmp_path)
    store_path = write_store(tmp_path / "p.zarr", "patches", {"test": 4}, size=4)
    with pytest.raises(
        ConfigError,
        match="is a 'multilabel' model but store .* holds 'patches'; evaluate it on a store tiled in 'tiles' mode",
    ):
        evaluate_bundle(bundle, store_path)


def test_run_evaluate_model_passes_the_label_fraction(tmp_path: Path) -> None:
    bundle, store, _, _ = multilabel_case(tmp_path)
    config = EvaluateJobConfig(method="model", model=str(bundle), store=str(store))
    assert run_evaluate(config, label_fraction=0.4)["label_fraction"] == 0.4
