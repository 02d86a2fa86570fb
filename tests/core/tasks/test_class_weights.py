"""Class weights in the task's loss (core/tasks/dense.py): a rare class is learnt where an unweighted loss ignores it.

A synthetic scene of 4000 pixels: 95 % of them are "field" (class 0) with feature [1, 0]; the other 5 % lie in a
small "quarry" area with feature [1, 1], where 40 % of the pixels are labelled quarry (class 1, 2 % of the scene)
and 60 % field (mixed pixels). A softmax classifier trained to convergence with the unweighted loss predicts field
in the quarry area (0.6 > 0.4): the rare class is never mapped. With the inverse-frequency weights of the training
counts, the quarry area is mapped as quarry. Trained with TensorFlow on the CPU, as the ranks do.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.tasks import get_task
from core.tasks.dense import WEIGHT_CAP, class_weights


def test_weights_are_inverse_frequency_and_capped() -> None:
    w = class_weights([500, 500])
    np.testing.assert_allclose(w, [1.0, 1.0])
    w = class_weights([960, 40])  # 12x rarer than average: sqrt(12) = 3.46
    assert w[1] == pytest.approx((1000 / (2 * 40)) ** 0.5, rel=1e-5) and w[0] < 1
    assert class_weights([100000, 1, 0]).max() == WEIGHT_CAP


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = 4000
    area = rng.random(n) < 0.05
    x = np.stack([np.ones(n), area.astype(float)], axis=1).astype(np.float32)
    y = np.where(area & (rng.random(n) < 0.4), 1, 0).astype(np.int32)
    return x, y


def _fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    task = get_task("dense")
    loss_fn = task.make_loss(2) if weights is None else task.make_loss(2, weights)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    opt = keras.optimizers.Adam(0.1)
    xt, yt = tf.constant(x), tf.constant(y)
    for _ in range(300):
        with tf.GradientTape() as tape:
            loss, _, _ = loss_fn(yt, model(xt, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return np.asarray(model(xt)).argmax(-1)


def test_class_weights_make_a_rare_class_learnt_that_an_unweighted_loss_ignores() -> None:
    x, y = _scene(np.random.default_rng(0))
    assert 0.01 < (y == 1).mean() < 0.03
    plain = _fit(x, y, None)
    weighted = _fit(x, y, class_weights(np.bincount(y, minlength=2)))
    rare = y == 1
    assert (plain[rare] == 1).mean() == 0.0  # the unweighted loss never maps the quarry
    assert (weighted[rare] == 1).mean() == 1.0  # the weighted one maps every quarry pixel
    assert (weighted[x[:, 1] == 0] == 0).all()  # and leaves the fields alone
