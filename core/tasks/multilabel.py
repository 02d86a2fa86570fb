"""Multi-label scene classification (the ResNet paper): targets from label rasters, augmentation, mixup, metrics.

A tile is labelled with every class that covers at least ``fraction`` of its labelled pixels (0 = unlabelled is
ignored), as a multi-hot vector over the store's class ids. Metrics follow scikit-learn's multi-label definitions
(``precision_recall_fscore_support`` with ``average="micro"``, ``"macro"`` and ``None``, ``zero_division=0``) and are
computed from per-class true-positive / false-positive / false-negative counts, so ranks can sum their counts and
score the whole split. Everything but the TensorFlow loss (:func:`multilabel_loss`) is pure numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.tasks.api import Batches, LossFn, TaskSpec, register_task

log = logging.getLogger(__name__)

THRESHOLD = 0.5
"""A class is predicted present when its sigmoid probability is at least this."""


def targets(labels: np.ndarray, class_ids: Sequence[int], fraction: float) -> np.ndarray:
    """Multi-hot targets of tiles from their label rasters.

    Args:
        labels: (N, H, W) class ids per pixel (0 = unlabelled; values that are not in ``class_ids`` are ignored too).
        class_ids: the K class ids, in output order.
        fraction: a class is present when its pixels are at least this fraction (0-1] of the tile's labelled pixels.

    Returns:
        (N, K) float32 of 0 / 1; a tile without labelled pixels gets all zeros.
    """
    if not 0 < fraction <= 1:
        raise ValueError(
            f"fraction {fraction} is outside (0, 1]: give the share of a tile's labelled pixels a class "
            "must cover to count as present, e.g. 0.05"
        )
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels of shape {lab.shape} are not (N, H, W) label rasters")
    ids = np.asarray(list(class_ids), dtype=np.int64)
    flat = lab.reshape(len(lab), -1).astype(np.int64)
    counts = (flat[:, :, None] == ids[None, None, :]).sum(axis=1)  # (N, K) pixels of each class
    labelled = counts.sum(axis=1, keepdims=True)
    return ((counts >= fraction * labelled) & (counts > 0)).astype(np.float32)


def augment(xs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """A random one of the 8 rotations by 90 degrees and flips of each sample (the same for all its modalities).

    Multi-label targets do not change under these, so only the inputs are transformed.

    Args:
        xs: one (B, H, W, C) array per modality (square tiles: H == W).
    """
    ops = rng.integers(0, 8, size=len(xs[0]))
    out = [np.empty_like(x) for x in xs]
    for op in np.unique(ops):
        sel = np.flatnonzero(ops == op)
        for x, o in zip(xs, out):
            a = np.rot90(x[sel], int(op) % 4, axes=(1, 2))
            o[sel] = a[:, :, ::-1] if op >= 4 else a
    return out


def mixup(
    xs: list[np.ndarray], y: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Mixup (Zhang et al. 2018): blend the batch with a shuffled copy of itself, inputs and targets alike.

    ``lam ~ Beta(alpha, alpha)`` once per batch; ``x = lam * x + (1 - lam) * x[perm]`` for every modality and the
    same for ``y`` (any per-sample array: multi-hot targets, sample weights packed with them).

    Returns:
        (mixed inputs, mixed y, lam). ``alpha <= 0`` returns the batch unchanged with lam = 1.
    """
    if alpha <= 0:
        return xs, y, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(y))
    mixed = [(lam * x + (1 - lam) * x[perm]).astype(x.dtype) for x in xs]
    return mixed, (lam * y + (1 - lam) * y[perm]).astype(y.dtype), lam


def counts(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-class (3, K) true positives, false positives and false negatives of binary (N, K) arrays.

    ``weights`` (N,) weighs samples (0 leaves a sample out); arrays are thresholded at 0.5.
    """
    t = np.asarray(y_true) >= THRESHOLD
    p = np.asarray(y_pred) >= THRESHOLD
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w[:, None]
    return np.stack([((t & p) * w).sum(0), ((~t & p) * w).sum(0), ((t & ~p) * w).sum(0)]).astype(np.float64)


def _div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def metrics_from_counts(c: np.ndarray, class_ids: Sequence[int]) -> dict[str, Any]:
    """Micro / macro precision, recall, F1 and per-class figures from (3, K) tp / fp / fn counts.

    Micro pools the counts of all classes; macro is the unweighted mean of the per-class values over all K classes
    (scikit-learn's ``average="macro"``: a class that never occurs and is never predicted scores 0). A ratio with a
    zero denominator is 0.

    Returns:
        ``{"micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1",
        "per_class": {"<id>": {"precision", "recall", "f1", "support"}}}`` (fractions in [0, 1]; support = weighted
        count of samples holding the class).
    """
    tp, fp, fn = (np.asarray(c, dtype=np.float64)[i] for i in range(3))
    prec, rec = _div(tp, tp + fp), _div(tp, tp + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    mtp, mfp, mfn = tp.sum(), fp.sum(), fn.sum()
    return {
        "micro_precision": float(_div(mtp, mtp + mfp)),
        "micro_recall": float(_div(mtp, mtp + mfn)),
        "micro_f1": float(_div(2 * mtp, 2 * mtp + mfp + mfn)),
        "macro_precision": float(prec.mean()),
        "macro_recall": float(rec.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            str(int(cid)): {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": float(tp[i] + fn[i]),
            }
            for i, cid in enumerate(class_ids)
        },
    }


def multilabel_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_ids: Sequence[int]) -> dict[str, Any]:
    """Metrics of (N, K) multi-hot references against (N, K) probabilities (present when >= 0.5)."""
    t, p = np.asarray(y_true), np.asarray(y_prob)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(class_ids):
        raise ValueError(
            f"references {t.shape} and predictions {p.shape} must both be (N, K) with K = {len(class_ids)} classes"
        )
    return metrics_from_counts(counts(t, p), class_ids)


def exact_matches(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted count of samples of binary (N, K) arrays whose predicted set of classes is exactly the reference
    set (arrays thresholded at 0.5; ``weights`` (N,) as in :func:`counts`)."""
    same = ((np.asarray(y_true) >= THRESHOLD) == (np.asarray(y_pred) >= THRESHOLD)).all(axis=1)
    w = np.ones(len(same)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float((same * w).sum())


def split_metrics(
    c: np.ndarray, samples: float, exact: float, class_ids: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """The scores of a whole split from its summed (3, K) :func:`counts` and :func:`exact_matches`.

    Returns:
        :func:`metrics_from_counts` with each class's ``name`` added, plus ``"subset_accuracy"`` (share of samples
        whose label set is predicted exactly), ``"hamming_loss"`` (share of the ``samples * K`` label bits that are
        wrong), ``"samples"``, ``"class_ids"`` and ``"class_names"``. Both shares are 0 when ``samples`` is 0.
    """
    out = metrics_from_counts(c, class_ids)
    for cid, name in zip(class_ids, class_names):
        out["per_class"][str(int(cid))]["name"] = str(name)
    wrong = float(np.asarray(c, dtype=np.float64)[1:].sum())  # false positives + false negatives
    out.update(
        {
            "subset_accuracy": float(_div(exact, samples)),
            "hamming_loss": float(_div(wrong, samples * len(class_ids))),
            "samples": float(samples),
            "class_ids": [int(i) for i in class_ids],
            "class_names": [str(n) for n in class_names],
        }
    )
    return out


# ---- the task -------------------------------------------------------------------------------------------------------
def multilabel_loss(num_classes: int) -> LossFn:
    """``loss(y, probs) -> (loss, denom, stats)``: binary cross-entropy over multi-hot targets, weighted per tile.

    ``y`` is (B, K + 1): the targets of :func:`training_targets` and, last, the tile weight; ``denom`` is the summed
    weight; ``stats`` is ``[label bits right, label bits scored]`` then the (3, K) weighted true-positive /
    false-positive / false-negative counts, flattened.
    """
    import keras
    import tensorflow as tf

    def multi(y: Any, probs: Any) -> tuple[Any, Any, Any]:
        t, w = y[:, :num_classes], y[:, num_classes]
        denom = tf.reduce_sum(w)
        loss = tf.reduce_sum(keras.losses.binary_crossentropy(t, probs) * w) / tf.maximum(denom, 1e-6)
        pred, true, wc = probs >= THRESHOLD, t >= THRESHOLD, w[:, None]

        def weighted(b: Any) -> Any:
            return tf.reduce_sum(tf.cast(b, tf.float32) * wc, axis=0)

        correct = tf.reduce_sum(weighted(tf.equal(pred, true)))
        counts = [weighted(pred & true), weighted(pred & ~true), weighted(~pred & true)]
        return loss, denom, tf.concat([tf.stack([correct, denom * num_classes]), *counts], axis=0)

    return multi


def training_targets(labels: np.ndarray, index: np.ndarray, class_ids: Sequence[int], fraction: float) -> np.ndarray:
    """(N, K + 1) float32: the multi-hot :func:`targets` of label tiles and, last, a sample weight (0 for a tile
    with no labelled pixel); ``index`` holds the labels as output indices (-1 = unlabelled)."""
    if len(labels) == 0:
        return np.zeros((0, len(class_ids) + 1), np.float32)
    weight = (index >= 0).reshape(len(index), -1).any(axis=1).astype(np.float32)
    return np.concatenate([targets(labels, class_ids, fraction), weight[:, None]], axis=1)


def augment_tiles(xs: list[np.ndarray], y: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`augment` of the inputs; the targets do not change."""
    return augment(xs, rng), y


def label_fraction_of(meta: Any) -> float | None:
    """The ``label_fraction`` a multi-label bundle was trained with, when its meta records it (else None)."""
    value = meta.extra.get("label_fraction")
    return None if value is None else float(value)


def score_split(batches: Batches, meta: Any, label_fraction: float | None = None) -> dict[str, Any]:
    """Multi-hot targets of each tile (classes covering >= the label fraction of its labelled pixels, as in
    training) against its sigmoid outputs (present when >= :data:`THRESHOLD`); tiles with no labelled pixel are
    left out, as training weighs them 0.

    ``label_fraction`` None: the bundle meta's, else the TrainJobConfig default (with a warning).
    """
    fraction = label_fraction if label_fraction is not None else label_fraction_of(meta)
    if fraction is None:
        from core.configs import TrainJobSchema

        fraction = TrainJobSchema.model_fields["label_fraction"].default
        log.warning(
            "the bundle of model %s does not record the label_fraction it was trained with; scoring with "
            "the default %s (pass label_fraction to use another)",
            meta.model,
            fraction,
        )
    ids = np.asarray(meta.class_ids, dtype=np.int64)
    c = np.zeros((3, len(ids)), dtype=np.float64)
    samples = exact = 0.0
    for y, probs in batches:
        t = targets(y, meta.class_ids, fraction)
        w = np.isin(y.reshape(len(y), -1), ids).any(axis=1).astype(np.float64)
        c += counts(t, probs, w)
        exact += exact_matches(t, probs, w)
        samples += float(w.sum())
    out = split_metrics(c, samples, exact, meta.class_ids, meta.class_names)
    out.update({"task": "multilabel", "label_fraction": float(fraction), "threshold": THRESHOLD})
    return out


def f1_headline(metrics: dict[str, Any]) -> str:
    return f"micro F1 {metrics['micro_f1']:.3f}, macro F1 {metrics['macro_f1']:.3f}"


def epoch_scores(prefix: str, stats: np.ndarray, class_ids: Sequence[int]) -> dict[str, Any]:
    """Multi-label figures of summed loss ``stats`` (see :func:`multilabel_loss`) as epoch-metric keys."""
    m = metrics_from_counts(np.asarray(stats[2:]).reshape(3, -1), class_ids)
    out = {f"{prefix}{k}": v for k, v in m.items() if k != "per_class"}
    out[f"{prefix}per_class_f1"] = {cid: c["f1"] for cid, c in m["per_class"].items()}
    return out


def meta_extra(config: Any) -> dict[str, Any]:
    """What a multi-label bundle records beyond the model: the label fraction of its targets."""
    return {"label_fraction": config.label_fraction}


MULTILABEL_TASK = register_task(
    TaskSpec(
        name="multilabel",
        store_mode="tiles",
        make_loss=multilabel_loss,
        targets=training_targets,
        augment=augment_tiles,
        score=score_split,
        headline=f1_headline,
        predictor=None,
        activation_channels=512,
        train_options=("label_fraction",),
        mixup=True,
        epoch_scores=epoch_scores,
        meta_extra=meta_extra,
    )
)
