"""Accuracy metrics of a land-cover classification (pure numpy).

Everything is computed from one confusion matrix over the declared class ids. Rows are the reference (true) class,
columns the predicted class, in ``class_ids`` order. Pixels whose reference is 0 (unlabelled), the nodata value, or
not a declared class are ignored; pixels whose *prediction* is not a declared class (e.g. a prediction nodata
value inside the reference mask) are not in the matrix either but are counted in ``n_unpredicted`` so they are
never silently lost.

Per-class precision / recall / F1 / IoU follow scikit-learn's definitions. A ratio with a zero denominator is 0.0
(scikit-learn's ``zero_division=0``) for classes that occur in the reference or the prediction; classes that occur
in neither get ``None`` and are left out of the macro averages (scikit-learn's default label set is likewise the
union of the labels present).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_ids: Sequence[int],
    nodata: int | None = None,
    ignore: Sequence[int] = (0,),
) -> tuple[np.ndarray, int]:
    """Confusion matrix of two label arrays of the same shape.

    Args:
        y_true: reference class ids, any shape (e.g. ``(rows, cols)``), integer.
        y_pred: predicted class ids, same shape.
        class_ids: the classes, in matrix order (values 1..255).
        nodata: reference value that means "no reference" besides ``ignore``.
        ignore: reference values that are never scored (0 = unlabelled).

    Returns:
        ``(cm, n_unpredicted)``: ``cm`` is ``(K, K)`` int64 with ``cm[i, j]`` = pixels of true class
        ``class_ids[i]`` predicted as ``class_ids[j]``; ``n_unpredicted`` counts scored reference pixels whose
        prediction is not a declared class.
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"reference has {t.size} values but prediction has {p.size}; they must cover the same pixels")
    ids = np.asarray(list(class_ids), dtype=np.int64)
    k = len(ids)
    # Lookup table value -> matrix index (-1 = not a class); values are small non-negative integers.
    hi = int(max(ids.max(initial=0), t.max(initial=0), p.max(initial=0))) + 1
    lut = np.full(hi, -1, dtype=np.int64)
    lut[ids] = np.arange(k)
    t64, p64 = t.astype(np.int64), p.astype(np.int64)
    ti = np.where(t64 >= 0, lut[np.clip(t64, 0, hi - 1)], -1)
    for v in (*ignore, *(() if nodata is None else (nodata,))):
        ti[t == v] = -1
    pi = np.where(p64 >= 0, lut[np.clip(p64, 0, hi - 1)], -1)
    scored = ti >= 0
    ok = scored & (pi >= 0)
    cm = np.bincount(ti[ok] * k + pi[ok], minlength=k * k).reshape(k, k).astype(np.int64)
    return cm, int(scored.sum() - ok.sum())


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def metrics_from_confusion(
    cm: np.ndarray, class_ids: Sequence[int], class_names: Sequence[str] | None = None, n_unpredicted: int = 0
) -> dict[str, Any]:
    """All accuracy figures of a confusion matrix, as a JSON-able dict.

    Args:
        cm: ``(K, K)`` counts, rows = reference, columns = prediction.
        class_ids: class id of each row/column.
        class_names: optional names, same order.
        n_unpredicted: scored pixels left out of ``cm`` (see :func:`confusion_matrix`).

    Returns:
        ``{"overall_accuracy", "kappa", "macro_f1", "mean_iou", "n_pixels", "n_unpredicted", "class_ids",
        "class_names", "confusion_matrix", "per_class": {"<id>": {"name", "precision", "recall", "f1", "iou",
        "support", "predicted"}}}``; accuracies are fractions in [0, 1].
    """
    cm = np.asarray(cm, dtype=np.int64)
    ids = [int(c) for c in class_ids]
    names = list(class_names) if class_names is not None else [str(c) for c in ids]
    if cm.shape != (len(ids), len(ids)):
        raise ValueError(f"confusion matrix has shape {cm.shape} but there are {len(ids)} class ids")
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)  # reference pixels per class
    predicted = cm.sum(axis=0).astype(np.float64)
    oa = _ratio(tp.sum(), n)
    pe = float((support * predicted).sum() / (n * n)) if n else 0.0
    kappa = float((oa - pe) / (1 - pe)) if n and pe < 1 else (1.0 if n and oa == 1.0 else 0.0)
    per_class: dict[str, dict[str, Any]] = {}
    f1s: list[float] = []
    ious: list[float] = []
    for i, cid in enumerate(ids):
        present = support[i] > 0 or predicted[i] > 0
        if present:
            prec = _ratio(tp[i], predicted[i])
            rec = _ratio(tp[i], support[i])
            f1 = _ratio(2 * tp[i], support[i] + predicted[i])
            iou = _ratio(tp[i], support[i] + predicted[i] - tp[i])
            f1s.append(f1)
            ious.append(iou)
        per_class[str(cid)] = {
            "name": names[i],
            "precision": prec if present else None,
            "recall": rec if present else None,
            "f1": f1 if present else None,
            "iou": iou if present else None,
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
    return {
        "overall_accuracy": oa,
        "kappa": kappa,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "n_pixels": n,
        "n_unpredicted": int(n_unpredicted),
        "class_ids": ids,
        "class_names": names,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
    }


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str] | None = None,
    nodata: int | None = None,
) -> dict[str, Any]:
    """Confusion matrix and all metrics of two label arrays in one call (see :func:`metrics_from_confusion`)."""
    cm, unpredicted = confusion_matrix(y_true, y_pred, class_ids, nodata=nodata)
    return metrics_from_confusion(cm, class_ids, class_names, unpredicted)


def summary_line(m: dict[str, Any]) -> str:
    """One human line: ``OA 0.912  kappa 0.874  macro-F1 0.853  mIoU 0.771  (n=12345)``."""
    return (
        f"OA {m['overall_accuracy']:.3f}  kappa {m['kappa']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
        f"mIoU {m['mean_iou']:.3f}  (n={m['n_pixels']})"
    )
