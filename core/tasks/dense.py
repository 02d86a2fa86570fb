"""Dense (per-pixel) classification of tiles: (B, H, W, C) -> (B, H, W, K) softmax, masked cross-entropy.

Also the home of what every single-label task shares (:mod:`core.tasks.patch` is the one-pixel case): the masked
loss (label 0 = unlabelled is ignored), index targets and confusion-matrix scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.sampling.augment import dihedral
from core.tasks.api import Batches, LossFn, TaskSpec, register_task
from core.tasks.metrics import confusion_matrix, metrics_from_confusion
from core.tasks.predictors import DENSE

WEIGHT_CAP = 5.0
"""The largest class weight of :func:`class_weights`."""
WEIGHT_POWER = 0.5
"""The power of the inverse frequency in :func:`class_weights`: 0.5 (the square root) lifts rare classes without
making the model paint them over the common ones (1.0, plain inverse frequency, cost strzegom's map 8 points of OA)."""


def class_weights(counts: Sequence[int], cap: float = WEIGHT_CAP, power: float = WEIGHT_POWER) -> np.ndarray:
    """Inverse-frequency weight of each class from its training counts (pixels or patches), capped at ``cap``.

    ``w_c = min((N / (K n_c)) ** power, cap)`` for ``K`` classes and ``N`` counted items (a balanced split gives 1
    everywhere; a class 25x rarer than average weighs 5x with the default power); a class with no training item gets
    ``cap`` (it never occurs in the loss). Returns (K,) float32.
    """
    n = np.asarray(counts, dtype=np.float64)
    total, k = n.sum(), len(n)
    if total <= 0:
        return np.ones(k, dtype=np.float32)
    w = np.where(n > 0, (total / (k * np.maximum(n, 1.0))) ** power, cap)
    return np.minimum(w, cap).astype(np.float32)


def masked_loss(num_classes: int, weights: Sequence[float] | None = None) -> LossFn:
    """``loss(y, probs) -> (loss, counted, [correct, counted])``: sparse cross-entropy over labelled items.

    ``y`` holds output indices with -1 for unlabelled pixels (or centre labels), which count nowhere. With
    ``weights`` (one per class, e.g. :func:`class_weights`) the loss is the weighted mean ``sum(w_y ce) / sum(w_y)``
    over the labelled items, so rare classes weigh as much as their weight says; ``counted`` stays the number of
    labelled items (the count heterogeneous averaging weighs a rank's gradient by).
    """
    import keras
    import tensorflow as tf

    table = tf.constant(np.ones(num_classes, np.float32) if weights is None else np.asarray(weights, np.float32))

    def masked(y: Any, probs: Any) -> tuple[Any, Any, Any]:
        mask = tf.cast(y >= 0, tf.float32)
        ce = keras.losses.sparse_categorical_crossentropy(tf.maximum(y, 0), probs)
        counted = tf.reduce_sum(mask)
        w = tf.gather(table, tf.maximum(y, 0)) * mask
        loss = tf.reduce_sum(ce * w) / tf.maximum(tf.reduce_sum(w), 1e-6)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32) * mask)
        return loss, counted, tf.stack([correct, counted])

    return masked


def index_targets(labels: np.ndarray, index: np.ndarray, class_ids: Sequence[int], fraction: float) -> np.ndarray:
    """Single-label targets are the labels as output indices (-1 = unlabelled)."""
    return index


def score_classes(batches: Batches, meta: Any, label_fraction: float | None = None) -> dict[str, Any]:
    """The :mod:`core.tasks.metrics` dict of every labelled item (dense: pixels; patch: centre labels), the
    arg-max class being the prediction."""
    ids = np.asarray(meta.class_ids, dtype=np.uint8)  # output index -> class id lookup
    class_ids = [int(i) for i in ids]
    cm = np.zeros((len(ids), len(ids)), dtype=np.int64)
    unpredicted = 0
    for y, probs in batches:
        c, u = confusion_matrix(y, ids[probs.argmax(-1)], class_ids)
        cm += c
        unpredicted += u
    return metrics_from_confusion(cm, class_ids, meta.class_names, unpredicted)


def accuracy_headline(metrics: dict[str, Any]) -> str:
    return f"OA {metrics['overall_accuracy']:.3f}"


def augment_tiles(xs: list[np.ndarray], y: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A random rotation / flip of the batch, label tiles with it."""
    return dihedral(xs, y, True, rng)


DENSE_TASK = register_task(
    TaskSpec(
        name="dense",
        store_mode="tiles",
        make_loss=masked_loss,
        targets=index_targets,
        augment=augment_tiles,
        score=score_classes,
        headline=accuracy_headline,
        predictor=DENSE,
        activation_channels=192,
        class_weighted=True,
        random_windows=True,
    )
)
