"""A trained classical baseline on disk, and its per-pixel prediction task for :func:`core.inference.predict.run_predict`.

Layout of a baseline bundle folder (the counterpart of a deep model bundle, :mod:`core.models.bundle`)::

    <dir>/estimator.joblib    the fitted scikit-learn estimator (joblib)
    <dir>/baseline.json       BaselineMeta as JSON (its presence marks the folder as a baseline bundle)

Features are those of :mod:`core.baselines.estimators`, built the same way for training (from the store) and for prediction
(from the scene's rasters): for every label-grid pixel and every modality in ``meta.modalities`` order, the
``p x p`` window of that modality's pixels centred on the modality pixel that holds the label pixel's centre
(``p = meta.sample_size[m]``: 1 for ``features="center"``, the store's patch side for ``"patch"``), flattened
channels-last (rows, cols, bands) and concatenated. Values are raw (no normalisation: the random forest needs
none, KNN and SVM standardise inside their pipeline); NaN, nodata and off-raster values become 0.

Prediction: :func:`predict_baseline_window` is a Dask task that classifies every pixel of one core block, in
chunks of ``batch_size`` pixels so a worker never holds more than one chunk's feature matrix; the driver side is
:func:`core.inference.predict.run_predict`, which writes the same class-map COG as for the deep models. Confidence is the
estimator's top class probability where it has ``predict_proba`` (RF, KNN); the RBF SVM has none, so its
confidence raster is all nodata (255).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.baselines.estimators import KINDS, MAX_TRAIN_SAMPLES, make_estimator, score_estimator, split_features
from core.data import cog
from core.data.scene import Scene
from core.errors import ConfigError
from core.geo.windows import PixelWindow
from core.inference.windows import Views, gather_patches, patch_views
from core.models.bundle import BundleFormat, cached_load, meta_from_json, read_meta_json, register_bundle_format
from core.tasks.predictors import WindowPredictor, implement_predictor
from core.tiling.store import TileStore

log = logging.getLogger(__name__)

ESTIMATOR_FILE = "estimator.joblib"
META_FILE = "baseline.json"
NORMALISATION = "raw values, NaN/nodata -> 0; knn and svm standardise with the training mean/std in their pipeline"


@dataclass(frozen=True)
class BaselineMeta:
    """What a baseline needs besides the estimator to classify new imagery (mirrors :class:`ModelMeta`).

    Attributes:
        method: ``rf``, ``knn`` or ``svm``.
        features: ``center`` (one pixel per modality) or ``patch`` (vectorised patches of every modality).
        modalities: feature order.
        sample_size: modality -> side (pixels of that modality) of the window flattened into the features.
        class_ids, class_names, class_colors: the store's classes (the map's colour table).
        band_stats: the store's train-split band statistics (used to check band counts, not to normalise).
        scene: scene the store was cut from; store: the store trained on.
        train: ``{"n_train", "n_features", "fit_seconds", "max_train_samples", "seed"}``.
        task: always ``"baseline"`` (a label for listings; :func:`core.inference.predict.run_predict` knows a
            baseline bundle by its :data:`META_FILE`).
    """

    method: str
    features: str
    modalities: tuple[str, ...]
    sample_size: dict[str, int]
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    band_stats: dict[str, dict[str, list[float]]]
    scene: str
    store: str
    train: dict[str, Any] = field(default_factory=dict)
    normalisation: str = NORMALISATION
    task: str = "baseline"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BaselineMeta:
        return meta_from_json(text, cls)


def is_baseline_bundle(directory: str | Path) -> bool:
    """True when ``directory`` holds a baseline bundle (rather than a Keras model bundle)."""
    return (Path(directory) / META_FILE).exists()


def save_baseline_bundle(directory: str | Path, estimator: Any, meta: BaselineMeta) -> Path:
    """Write ``estimator`` (joblib) and ``meta`` into ``directory`` (created); returns the folder."""
    import joblib

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (ESTIMATOR_FILE + ".tmp")
    joblib.dump(estimator, tmp)
    tmp.replace(d / ESTIMATOR_FILE)  # atomic: a worker never loads a half-written estimator
    (d / META_FILE).write_text(meta.to_json())
    return d


def load_baseline_meta(directory: str | Path) -> BaselineMeta:
    """The :class:`BaselineMeta` of a baseline bundle folder."""
    return read_meta_json(Path(directory) / META_FILE, BaselineMeta, "a baseline run")


def load_baseline_bundle(directory: str | Path) -> tuple[Any, BaselineMeta]:
    """(estimator, meta) of a baseline bundle folder."""
    import joblib

    meta = load_baseline_meta(directory)
    return joblib.load(Path(directory) / ESTIMATOR_FILE), meta


def cached_baseline(bundle_dir: str) -> tuple[Any, BaselineMeta]:
    """(estimator, meta), loaded once per worker process and reloaded when the estimator file changes."""
    return cached_load(bundle_dir, ESTIMATOR_FILE, load_baseline_bundle)


def _checked_store(store_path: str | Path, method: str, features: str) -> TileStore:
    """The store, once the method and features are known to apply to it."""
    if method not in KINDS:
        raise ConfigError(f"baseline method {method!r} is unknown; choose one of {list(KINDS)}")
    store = TileStore(store_path)
    if features not in ("center", "patch"):
        raise ConfigError(f"features {features!r} is unknown; use 'center' or 'patch'")
    if features == "patch" and store.info.mode != "patches":
        raise ConfigError(
            f"features='patch' vectorises patches, but store {store_path} holds {store.info.mode!r}; "
            "use features='center' (one row per labelled pixel) or tile in mode 'patches'"
        )
    return store


def fit_baseline_bundle(
    store_path: str | Path,
    out_dir: str | Path,
    method: str = "rf",
    features: str = "center",
    max_train_samples: int = 50_000,
    seed: int = 0,
    splits: tuple[str, ...] = ("test",),
) -> dict[str, Any]:
    """Fit a baseline on the store's train split, save it as a bundle and score it on ``splits``.

    Runs anywhere the store is readable (the baseline job runs it as a Dask task on one worker).

    Args:
        store_path: a tile store (:mod:`core.tiling.store`); tile stores give one row per labelled pixel, patch
            stores one row per patch.
        out_dir: bundle folder to write.
        method: ``rf``, ``knn`` or ``svm`` (:func:`core.baselines.estimators.make_estimator`).
        features: ``center`` or ``patch`` (patch stores only).
        max_train_samples: uniform random subsample of the training rows (SVM: at most ``SVM_MAX_SAMPLES``).
        splits: splits to score (those without labelled samples are skipped).

    Returns:
        ``{"bundle", "meta", "metrics": {split: metrics dict}}``.

    Raises:
        ConfigError: unknown method / features, ``patch`` features on a tile store, fewer than two classes.
    """
    store = _checked_store(store_path, method, features)
    info = store.info
    cap = min(max_train_samples, MAX_TRAIN_SAMPLES.get(method, max_train_samples))
    X, y = split_features(store, "train", features, cap, seed)
    if len(np.unique(y)) < 2:
        raise ConfigError(
            f"the train split of {store_path} holds only class {int(y[0])}; a classifier needs at "
            "least two classes: tile a larger AOI or change the split"
        )
    estimator = make_estimator(method, seed)
    t0 = time.perf_counter()
    estimator.fit(X, y)
    fit_s = round(time.perf_counter() - t0, 3)
    classes = sorted(info.classes, key=lambda c: int(c["id"]))
    sizes = {m: (int(info.sample_size[m]) if features == "patch" else 1) for m in info.modalities}
    meta = BaselineMeta(
        method=method,
        features=features,
        modalities=tuple(info.modalities),
        sample_size=sizes,
        class_ids=tuple(int(c["id"]) for c in classes),
        class_names=tuple(str(c["name"]) for c in classes),
        class_colors=tuple(str(c["color"]) for c in classes),
        band_stats=dict(info.band_stats),
        scene=str(info.scene.get("name", "")),
        store=str(store_path),
        train={
            "n_train": int(len(y)),
            "n_features": int(X.shape[1]),
            "fit_seconds": fit_s,
            "max_train_samples": cap,
            "seed": seed,
            "class_counts": {str(int(c)): int(k) for c, k in zip(*np.unique(y, return_counts=True))},
        },
    )
    bundle = save_baseline_bundle(out_dir, estimator, meta)
    metrics: dict[str, Any] = {}
    for split in splits:
        if store.valid_indices(split).size == 0:
            log.warning("store %s has no %s split: %s baseline not scored on it", store_path, split, method)
            continue
        metrics[split] = score_estimator(estimator, store, split, features)
    log.info("fitted %s baseline (%s) on %d rows in %.1f s -> %s", method, features, len(y), fit_s, bundle)
    return {"bundle": str(bundle), "meta": asdict(meta), "metrics": metrics}


def window_views(scene: Scene, date: str | None, meta: BaselineMeta, core: PixelWindow) -> tuple[Views, np.ndarray]:
    """Read what the features of ``core`` need (raw bands): :func:`core.inference.windows.patch_views`."""
    return patch_views(scene, date, meta.modalities, meta.sample_size, core)


def gather_features(views: Views, flat: np.ndarray, width: int) -> np.ndarray:
    """Feature rows ``(len(flat), n_features)`` float32 of the core pixels ``flat`` (row-major indices into a core
    ``width`` pixels wide): each modality's patch flattened channels-last, as in the store; NaN -> 0."""
    cols = [p.reshape(len(p), -1) for p in gather_patches(views, flat, width)]  # (n, p, p, C) flattened
    return np.nan_to_num(np.concatenate(cols, axis=1).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def window_features(
    scene: Scene, date: str | None, meta: BaselineMeta, core: PixelWindow
) -> tuple[np.ndarray, np.ndarray]:
    """All feature rows of ``core`` at once: ``(X, valid)``, X ``(core.height * core.width, n_features)`` float32
    in row-major pixel order, ``valid`` bool ``core.shape`` (see :func:`window_views`). For tests and small cores;
    prediction gathers chunk by chunk."""
    views, valid = window_views(scene, date, meta, core)
    return gather_features(views, np.arange(core.height * core.width), core.width), valid


def predict_baseline_window(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    read: PixelWindow,
    core: PixelWindow,
    batch_size: int = 4096,
    confidence: bool = True,
) -> tuple[PixelWindow, np.ndarray, np.ndarray | None]:
    """Dask task: classify every pixel of ``core`` with a baseline bundle, ``batch_size`` pixels at a time.

    The signature of every window task (:mod:`core.inference.windows`); ``read`` is not used.

    Returns:
        ``(core, classes, confidence)``: uint8 ``core.shape`` arrays; classes 0 where not valid, confidence in
        percent (255 = nodata, also everywhere for estimators without ``predict_proba``).
    """
    estimator, meta = cached_baseline(bundle_dir)
    views, valid = window_views(scene, date, meta, core)
    classes = np.zeros(core.height * core.width, dtype=np.uint8)
    conf = np.full(core.height * core.width, cog.CONFIDENCE_NODATA, dtype=np.uint8) if confidence else None
    todo = np.flatnonzero(valid.ravel())
    has_proba = hasattr(estimator, "predict_proba")
    known = np.asarray(estimator.classes_)
    for i in range(0, todo.size, max(1, batch_size)):
        rows = todo[i : i + batch_size]
        X = gather_features(views, rows, core.width)
        if has_proba:
            probs = np.asarray(estimator.predict_proba(X))
            classes[rows] = known[probs.argmax(axis=1)].astype(np.uint8)
            if conf is not None:
                conf[rows] = np.clip(np.rint(probs.max(axis=1) * 100), 0, 100).astype(np.uint8)
        else:
            classes[rows] = np.asarray(estimator.predict(X)).astype(np.uint8)
    return core, classes.reshape(core.shape), (conf.reshape(core.shape) if conf is not None else None)


BASELINE_PREDICTOR = WindowPredictor("baseline", reads_context=False)
"""Baseline bundles classify every pixel of a core block on its own, like patch models."""
implement_predictor(BASELINE_PREDICTOR, predict_baseline_window)
register_bundle_format(BundleFormat("baseline", META_FILE, load_baseline_meta, BASELINE_PREDICTOR))

__all__ = [
    "BASELINE_PREDICTOR",
    "BaselineMeta",
    "cached_baseline",
    "fit_baseline_bundle",
    "is_baseline_bundle",
    "load_baseline_bundle",
    "load_baseline_meta",
    "predict_baseline_window",
    "save_baseline_bundle",
    "window_features",
    "window_views",
    "gather_features",
]
