"""Which state data-parallel ranks share: rank 0's weights, but every rank its own dropout seeds."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import cloudpickle
import numpy as np
import pytest

from core.training.rank_state import broadcast_from_root, reseed, seed_states

# Rank functions of this module travel by value: the workers need not import the test package.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")


def _model(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    x = keras.layers.Dense(16, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5, name="drop_a")(x)
    x = keras.layers.Dropout(0.5, name="drop_b")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_seed_states_are_the_dropout_states_and_no_weight() -> None:
    pytest.importorskip("keras")
    model = _model(0)
    states = seed_states(model)
    assert len(states) == 2 and all("seed_generator_state" in v.path for v in states)
    assert not {id(v) for v in states} & {id(w) for w in model.weights}


def test_reseed_is_deterministic_and_differs_by_rank_step_and_layer() -> None:
    pytest.importorskip("keras")
    model = _model(0)
    seeds = reseed(model, seed=7, rank=1, step=0)
    assert len(set(seeds)) == 2  # the two dropout layers draw different masks
    assert [list(np.asarray(v.numpy())) for v in seed_states(model)] == [[s, 0] for s in seeds]
    assert reseed(_model(3), seed=7, rank=1, step=0) == seeds  # from (seed, rank, step), not the build seed
    assert reseed(model, seed=7, rank=0, step=0) != seeds
    assert reseed(model, seed=7, rank=1, step=10) != seeds  # a resumed run does not replay its first masks
    assert len(reseed(model, seed=-1, rank=0)) == 2  # any int seed


class _ZeroBroadcast:
    """A stand-in for ``horovod.tensorflow`` whose broadcast returns zeros, so what it touched is visible."""

    @staticmethod
    def broadcast(t: Any, root_rank: int, name: str) -> Any:
        import tensorflow as tf

        return tf.zeros_like(t)


def test_broadcast_takes_weights_and_optimizer_state_but_not_seed_states() -> None:
    keras = pytest.importorskip("keras")
    model = _model(0)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    seeds = reseed(model, seed=0, rank=1)
    broadcast_from_root(model, optimizer, _ZeroBroadcast())
    assert all(not np.asarray(w.numpy()).any() for w in model.weights)  # incl. BN moving statistics
    assert all(not np.asarray(v.numpy()).any() for v in optimizer.variables)
    assert [int(v.numpy()[0]) for v in seed_states(model)] == seeds


def dropout_rank(seed: int) -> dict[str, Any]:
    """As core.training.loop does: build from ``seed + rank``, broadcast from rank 0, reseed; then one averaged step."""
    import horovod.tensorflow as hvd
    import keras
    import tensorflow as tf

    from core.training.loop import weights_checksum

    rank = hvd.rank()
    model = _model(seed + rank)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    broadcast_from_root(model, optimizer, hvd)
    reseed(model, seed, rank)
    after_broadcast = weights_checksum(model)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 16)), tf.float32)  # the same on every rank
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(out**2)
    grads = hvd.grouped_allreduce(tape.gradient(loss, model.trainable_variables), op=hvd.Average)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return {
        "rank": rank,
        "after_broadcast": after_broadcast,
        "after_step": weights_checksum(model),
        "states": [np.asarray(v.numpy()).tolist() for v in seed_states(model)],
        "output": np.asarray(out).tolist(),
    }


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
def test_ranks_share_weights_but_draw_their_own_dropout_masks(cluster_client: Any) -> None:
    from core.distributed.launcher import run_horovod

    r0, r1 = run_horovod(cluster_client, dropout_rank, args=(5,), num_ranks=2, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r0["after_broadcast"] == r1["after_broadcast"] and r0["after_step"] == r1["after_step"]
    assert r0["states"] != r1["states"]
    # same weights and inputs, so the outputs differ only through the dropout masks
    assert np.asarray(r0["output"]).shape == (4, 2) and r0["output"] != r1["output"]
