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


def masked_loss(num_classes: int) -> LossFn:
    """``loss(y, probs) -> (loss, counted, [correct, counted])``: sparse cross-entropy over labelled items.

    ``y`` holds output indices with -1 for unlabelled pixels (or centre labels), which count nowhere.
    ``num_classes`` is not needed (the probabilities carry it); it is the signature of every task's loss.
    """
    import keras
    import tensorflow as tf

    def masked(y: Any, probs: Any) -> tuple[Any, Any, Any]:
        mask = tf.cast(y >= 0, tf.float32)
        ce = keras.losses.sparse_categorical_crossentropy(tf.maximum(y, 0), probs)
        counted = tf.reduce_sum(mask)
        loss = tf.reduce_sum(ce * mask) / tf.maximum(counted, 1.0)
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
    )
)
