"""Accuracy metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from core.tasks.metrics import classification_metrics, confusion_matrix, metrics_from_confusion, summary_line


def test_hand_computed_two_classes() -> None:
    # truth:  1 1 1 2 2 0(unlabelled)   pred: 1 1 2 2 1 2
    t = np.array([1, 1, 1, 2, 2, 0])
    p = np.array([1, 1, 2, 2, 1, 2])
    cm, unpred = confusion_matrix(t, p, [1, 2])
    assert cm.tolist() == [[2, 1], [1, 1]]
    assert unpred == 0
    m = metrics_from_confusion(cm, [1, 2], ["forest", "water"])
    assert m["overall_accuracy"] == pytest.approx(3 / 5)
    # pe = (3*3 + 2*2) / 25 = 13/25; kappa = (0.6 - 0.52) / 0.48
    assert m["kappa"] == pytest.approx((0.6 - 0.52) / 0.48)
    c1 = m["per_class"]["1"]
    assert c1["name"] == "forest"
    assert c1["precision"] == pytest.approx(2 / 3) and c1["recall"] == pytest.approx(2 / 3)
    assert c1["iou"] == pytest.approx(2 / 4)
    c2 = m["per_class"]["2"]
    assert c2["f1"] == pytest.approx(0.5) and c2["iou"] == pytest.approx(1 / 3)
    assert m["mean_iou"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert m["n_pixels"] == 5
    json.dumps(m)  # JSON-able
    assert "OA 0.600" in summary_line(m)


def test_nodata_and_unpredicted_are_excluded() -> None:
    t = np.array([[1, 255, 2], [2, 0, 1]], dtype=np.uint8)
    p = np.array([[1, 1, 0], [2, 2, 1]], dtype=np.uint8)  # 0 in the prediction = prediction nodata
    cm, unpred = confusion_matrix(t, p, [1, 2], nodata=255)
    assert cm.tolist() == [[2, 0], [0, 1]]
    assert unpred == 1
    m = metrics_from_confusion(cm, [1, 2], n_unpredicted=unpred)
    assert m["overall_accuracy"] == 1.0 and m["n_unpredicted"] == 1


def test_absent_class_is_none_and_not_averaged() -> None:
    t = np.array([1, 1, 2, 2])
    m = classification_metrics(t, t.copy(), [1, 2, 3])
    assert m["per_class"]["3"]["f1"] is None and m["per_class"]["3"]["support"] == 0
    assert m["macro_f1"] == 1.0 and m["mean_iou"] == 1.0 and m["kappa"] == 1.0


def test_shape_mismatch_message() -> None:
    with pytest.raises(ValueError, match="reference has 3 values but prediction has 2"):
        confusion_matrix(np.array([1, 2, 1]), np.array([1, 2]), [1, 2])


def test_against_sklearn_random() -> None:
    rng = np.random.default_rng(0)
    ids = [1, 3, 4, 7]
    t = rng.choice(ids, size=5000)
    p = np.where(rng.random(5000) < 0.7, t, rng.choice(ids, size=5000))
    m = classification_metrics(t, p, ids)
    assert np.array_equal(np.array(m["confusion_matrix"]), skm.confusion_matrix(t, p, labels=ids))
    assert m["overall_accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(t, p))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(t, p, average="macro"))
    assert m["mean_iou"] == pytest.approx(skm.jaccard_score(t, p, average="macro"))
    prec = skm.precision_score(t, p, labels=ids, average=None)
    rec = skm.recall_score(t, p, labels=ids, average=None)
    for i, c in enumerate(ids):
        assert m["per_class"][str(c)]["precision"] == pytest.approx(prec[i])
        assert m["per_class"][str(c)]["recall"] == pytest.approx(rec[i])
