"""Per-pixel classical baselines (random forest, k-nearest neighbours, RBF SVM) trained on a sample store.

Deep models are always compared with these. Features (see :func:`split_features`):

- tile stores: one row per labelled pixel (label != 0) of the split's tiles: the pixel's spectrum in every modality
  (a coarser modality contributes the pixel it falls in, nearest neighbour), concatenated in store order;
- patch stores: ``features="center"``: the centre pixel of each modality's patch; ``features="patch"``: the
  whole patches flattened (KNN / SVM on vectorised patches).

Raw values are used (NaN -> 0); KNN and SVM standardise each feature with the training mean and std first.
Training rows are a uniform random subsample of at most ``max_train_samples`` (SVM at most ``SVM_MAX_SAMPLES``:
its training time grows with the square of the sample count). Estimators run single-threaded (``n_jobs=1``) so a
baseline leaves the other cores of a shared machine alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core.errors import ConfigError
from core.tasks.metrics import confusion_matrix, metrics_from_confusion
from core.tiling.store import TileStore

log = logging.getLogger(__name__)

Kind = Literal["rf", "knn", "svm"]
KINDS: tuple[str, ...] = ("rf", "knn", "svm")
SVM_MAX_SAMPLES = 10_000
MAX_TRAIN_SAMPLES = {"svm": SVM_MAX_SAMPLES}
"""Methods whose fit time grows too fast for the job's ``max_train_samples``: their own cap."""
CHUNK = 64
"""Samples read from the store at a time (bounds memory for large stores)."""


def make_estimator(kind: str, seed: int = 0) -> Any:
    """An unfitted scikit-learn classifier: ``rf`` (100 trees), ``knn`` (k=5) or ``svm`` (RBF, one-vs-rest)."""
    if kind == "rf":
        return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    if kind == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5, n_jobs=1))
    if kind == "svm":
        return make_pipeline(StandardScaler(), OneVsRestClassifier(SVC(kernel="rbf", gamma="scale"), n_jobs=1))
    raise ConfigError(f"baseline {kind!r} is unknown; choose one of {list(KINDS)}")


def _chunk_features(
    store: TileStore, xs: dict[str, np.ndarray], y: np.ndarray, features: str
) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and labels of one chunk of samples (see the module docstring)."""
    mods = store.info.modalities
    if store.info.mode == "patches":
        if features == "patch":
            cols = [xs[m].reshape(len(y), -1) for m in mods]
        else:
            cols = [xs[m][:, xs[m].shape[1] // 2, xs[m].shape[2] // 2, :] for m in mods]
        return np.nan_to_num(np.concatenate(cols, axis=1).astype(np.float32)), y.astype(np.int64)
    n, h, w = y.shape
    labelled = y > 0
    idx_n, idx_r, idx_c = np.nonzero(labelled)
    cols = []
    for m in mods:
        hm, wm = xs[m].shape[1:3]
        rm = np.minimum(((idx_r + 0.5) * hm / h).astype(int), hm - 1)
        cm = np.minimum(((idx_c + 0.5) * wm / w).astype(int), wm - 1)
        cols.append(xs[m][idx_n, rm, cm, :])
    return np.nan_to_num(np.concatenate(cols, axis=1).astype(np.float32)), y[labelled].astype(np.int64)


def iter_features(store: TileStore, split: str, features: str = "center") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(X, y)`` chunks of a split: X ``(rows, features)`` float32, y ``(rows,)`` class ids (never 0)."""
    if features not in ("center", "patch"):
        raise ConfigError(f"features {features!r} is unknown; use 'center' or 'patch'")
    idx = store.valid_indices(split)
    for i in range(0, idx.size, CHUNK):
        xs, y = store.read(split, idx[i : i + CHUNK])
        X, yy = _chunk_features(store, xs, y, features)
        keep = yy > 0
        yield X[keep], yy[keep]


def split_features(
    store: TileStore, split: str, features: str = "center", max_samples: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """All feature rows of a split (a uniform random subsample of at most ``max_samples``)."""
    rng = np.random.default_rng(seed)
    Xs, ys, seen = [], [], 0
    for X, y in iter_features(store, split, features):
        seen += len(y)
        Xs.append(X)
        ys.append(y)
        if max_samples is not None and sum(len(v) for v in ys) > 4 * max_samples:
            # Keep memory bounded: thin what we hold so far, uniformly.
            Xa, ya = np.concatenate(Xs), np.concatenate(ys)
            keep = rng.choice(len(ya), size=2 * max_samples, replace=False)
            Xs, ys = [Xa[keep]], [ya[keep]]
    if not ys:
        raise ConfigError(
            f"split {split!r} of store {store.path} has no labelled samples; tile an AOI with labels "
            "or choose another split"
        )
    X, y = np.concatenate(Xs), np.concatenate(ys)
    if max_samples is not None and len(y) > max_samples:
        keep = np.sort(rng.choice(len(y), size=max_samples, replace=False))
        X, y = X[keep], y[keep]
    log.info("split %s of %s: %d labelled rows seen, %d used, %d features", split, store.path, seen, len(y), X.shape[1])
    return X, y


def train_baseline(
    store_path: str | Path, kind: str = "rf", features: str = "center", max_train_samples: int = 50_000, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Fit a baseline on the store's train split.

    Returns:
        ``(estimator, info)`` with ``info = {"kind", "features", "n_train", "n_features", "fit_seconds"}``.
    """
    store = TileStore(store_path)
    estimator = make_estimator(kind, seed)
    cap = min(max_train_samples, MAX_TRAIN_SAMPLES.get(kind, max_train_samples))
    X, y = split_features(store, "train", features, cap, seed)
    if len(np.unique(y)) < 2:
        raise ConfigError(
            f"the train split of {store_path} holds only class {int(y[0])}; a classifier needs at "
            "least two classes: tile a larger AOI or change the split"
        )
    t0 = time.perf_counter()
    estimator.fit(X, y)
    info = {
        "kind": kind,
        "features": features,
        "n_train": int(len(y)),
        "n_features": int(X.shape[1]),
        "fit_seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("fitted %s baseline on %d rows in %.1f s", kind, len(y), info["fit_seconds"])
    return estimator, info


def score_estimator(estimator: Any, store: TileStore, split: str = "test", features: str = "center") -> dict[str, Any]:
    """Score a fitted estimator on every labelled row of ``split`` (same rows as :func:`iter_features`).

    Returns:
        The :func:`core.tasks.metrics.metrics_from_confusion` dict over the store's classes plus
        ``"scoring": {"split", "n_test", "predict_seconds"}``.

    Raises:
        ConfigError: the split has no labelled samples.
    """
    classes = store.info.classes
    ids = [int(c["id"]) for c in classes]
    cm = np.zeros((len(ids), len(ids)), dtype=np.int64)
    unpredicted, n_test, t0 = 0, 0, time.perf_counter()
    for X, y in iter_features(store, split, features):
        if not len(y):
            continue
        c, u = confusion_matrix(y, estimator.predict(X), ids)
        cm += c
        unpredicted += u
        n_test += len(y)
    if n_test == 0:
        raise ConfigError(
            f"split {split!r} of store {store.path} has no labelled samples to score; "
            "choose another split or re-tile with a test fraction > 0"
        )
    out = metrics_from_confusion(cm, ids, [c["name"] for c in classes], unpredicted)
    out["scoring"] = {"split": split, "n_test": n_test, "predict_seconds": round(time.perf_counter() - t0, 3)}
    return out


def evaluate_baseline(
    store_path: str | Path,
    kind: str = "rf",
    split: str = "test",
    features: str = "center",
    max_train_samples: int = 50_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a baseline on the train split and score it on every labelled row of ``split``.

    Returns:
        The :func:`core.tasks.metrics.metrics_from_confusion` dict plus ``"baseline"``: the training info with
        ``n_test`` and ``predict_seconds``.
    """
    store = TileStore(store_path)
    estimator, info = train_baseline(store_path, kind, features, max_train_samples, seed)
    out = score_estimator(estimator, store, split, features)
    scoring = out.pop("scoring")
    out["baseline"] = {
        **info,
        "n_test": scoring["n_test"],
        "split": split,
        "predict_seconds": scoring["predict_seconds"],
    }
    return out


__all__ = [
    "KINDS",
    "evaluate_baseline",
    "iter_features",
    "make_estimator",
    "score_estimator",
    "split_features",
    "train_baseline",
]
