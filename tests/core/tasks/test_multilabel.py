"""Multi-label targets, augmentation, mixup and metrics (pure numpy; metrics checked against scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from core.tasks.multilabel import (
    augment,
    counts,
    exact_matches,
    metrics_from_counts,
    mixup,
    multilabel_metrics,
    split_metrics,
    targets,
)

IDS = (1, 2, 5)


def test_targets_are_the_classes_above_the_fraction_of_labelled_pixels() -> None:
    tile = np.zeros((4, 4), np.uint8)  # 1 unlabelled pixel, 10 x class 1, 4 x class 2, 1 x class 5
    tile.flat[1:11] = 1
    tile.flat[11:15] = 2
    tile.flat[15] = 5
    empty = np.zeros((4, 4), np.uint8)
    labels = np.stack([tile, empty])
    np.testing.assert_array_equal(targets(labels, IDS, 0.1), [[1, 1, 0], [0, 0, 0]])  # 1/15 of class 5 < 0.1
    np.testing.assert_array_equal(targets(labels, IDS, 0.05), [[1, 1, 1], [0, 0, 0]])  # 1/15 >= 0.05
    np.testing.assert_array_equal(targets(labels, IDS, 0.5), [[1, 0, 0], [0, 0, 0]])  # 10/15 >= 0.5 > 4/15
    assert targets(labels, IDS, 0.1).dtype == np.float32


def test_targets_refuse_bad_fraction_and_shape() -> None:
    with pytest.raises(ValueError, match=r"fraction 0 is outside \(0, 1\]"):
        targets(np.zeros((1, 2, 2)), IDS, 0)
    with pytest.raises(ValueError, match=r"labels of shape \(2, 2\) are not \(N, H, W\)"):
        targets(np.zeros((2, 2)), IDS, 0.1)


def test_augment_applies_one_of_the_eight_dihedral_transforms_per_sample_to_every_modality() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 5, 5, 2)).astype(np.float32)
    a, b = augment([x, 2 * x], np.random.default_rng(0))
    np.testing.assert_array_equal(b, 2 * a)  # same transform for both modalities of a sample
    seen = set()
    for i in range(len(x)):
        options = [np.rot90(x[i], k, axes=(0, 1)) for k in range(4)]
        options += [o[:, ::-1] for o in options]
        matches = [j for j, o in enumerate(options) if np.array_equal(o, a[i])]
        assert matches, f"sample {i} is not a rotation/flip of its input"
        seen.add(matches[0])
    assert len(seen) >= 6  # the transforms vary per sample


def test_mixup_blends_inputs_and_targets_with_one_beta_draw() -> None:
    x = np.arange(4 * 2, dtype=np.float32).reshape(4, 2, 1, 1)
    y = np.eye(4, 3, dtype=np.float32)
    xs, ym, lam = mixup([x], y, 0.4, np.random.default_rng(7))
    replay = np.random.default_rng(7)
    lam2, perm = replay.beta(0.4, 0.4), replay.permutation(4)
    assert lam == pytest.approx(lam2) and 0 <= lam <= 1
    np.testing.assert_allclose(xs[0], lam * x + (1 - lam) * x[perm], rtol=1e-6)
    np.testing.assert_allclose(ym, lam * y + (1 - lam) * y[perm], rtol=1e-6)
    same = mixup([x], y, 0.0, np.random.default_rng(7))
    assert same[0][0] is x and same[1] is y and same[2] == 1.0


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_match_scikit_learn(weighted: bool) -> None:
    rng = np.random.default_rng(11)
    y_true = (rng.random((60, 5)) < 0.4).astype(int)
    y_prob = np.clip(y_true * 0.6 + rng.random((60, 5)) * 0.5, 0, 1)
    y_true[:, 4] = 0  # a class that never occurs ...
    y_prob[:, 4] = 0.1  # ... and is never predicted: F1 0 in the macro mean, as scikit-learn's zero_division=0
    w = rng.integers(0, 3, size=60).astype(float) if weighted else None
    ids = (1, 2, 3, 4, 7)
    m = metrics_from_counts(counts(y_true, y_prob, w), ids)
    y_pred = (y_prob >= 0.5).astype(int)
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0, sample_weight=w)
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx((p, r, f), abs=1e-12)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0, sample_weight=w)
    assert [m["per_class"][str(i)]["f1"] for i in ids] == pytest.approx(list(f), abs=1e-12)
    assert [m["per_class"][str(i)]["support"] for i in ids] == pytest.approx(list(s), abs=1e-12)
    assert m["per_class"]["7"]["f1"] == 0.0


def test_counts_of_parts_add_up_to_the_whole_and_shapes_are_checked() -> None:
    rng = np.random.default_rng(2)
    t, p = rng.random((20, 3)) < 0.5, rng.random((20, 3))
    np.testing.assert_array_equal(counts(t[:7], p[:7]) + counts(t[7:], p[7:]), counts(t, p))  # ranks can sum
    assert multilabel_metrics(t, p, IDS)["micro_f1"] == metrics_from_counts(counts(t, p), IDS)["micro_f1"]
    with pytest.raises(ValueError, match=r"must both be \(N, K\) with K = 3 classes"):
        multilabel_metrics(t[:, :2], p[:, :2], IDS)


@pytest.mark.parametrize("weighted", [False, True])
def test_split_metrics_of_summed_batches_match_scikit_learn(weighted: bool) -> None:
    from sklearn.metrics import accuracy_score, hamming_loss

    rng = np.random.default_rng(5)
    t, prob = (rng.random((40, 3)) < 0.4).astype(int), rng.random((40, 3))
    w = rng.integers(0, 3, size=40).astype(float) if weighted else np.ones(40)
    parts = [slice(0, 16), slice(16, 32), slice(32, 40)]  # batches, summed as evaluate_bundle does
    c = sum(counts(t[s], prob[s], w[s]) for s in parts)
    exact = sum(exact_matches(t[s], prob[s], w[s]) for s in parts)
    m = split_metrics(c, float(w.sum()), exact, IDS, ("water", "forest", "urban"))
    pred = (prob >= 0.5).astype(int)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(t, pred, sample_weight=w))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(t, pred, sample_weight=w))
    assert m["micro_f1"] == metrics_from_counts(c, IDS)["micro_f1"] and m["samples"] == w.sum()
    assert m["per_class"]["5"]["name"] == "urban" and m["class_names"] == ["water", "forest", "urban"]
    empty = split_metrics(np.zeros((3, 3)), 0.0, 0.0, IDS, ("a", "b", "c"))
    assert empty["subset_accuracy"] == empty["hamming_loss"] == empty["micro_f1"] == 0.0
